"""A QoS1 subscriber on the test broker that records every message (the "cloud" side of a test).

It uses the same awsiotsdk MQTT5 client as the agent, with a persistent session so that messages published while
it reconnects (broker restarts) are queued by the broker and still delivered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import orjson
from awscrt import mqtt5
from awsiot import mqtt5_client_builder

from agent.uplink.envelope import decode_telemetry


class Subscriber:
    def __init__(
        self, port: int, ca: Path, cert: Path, key: Path, topic: str = "dt/#", client_id: str = "test-subscriber"
    ):
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stopped = threading.Event()
        self.topic = topic
        self.client = mqtt5_client_builder.mtls_from_path(
            endpoint="localhost",
            port=port,
            cert_filepath=str(cert),
            pri_key_filepath=str(key),
            ca_filepath=str(ca),
            client_id=client_id,
            session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS,
            session_expiry_interval_sec=3600,
            keep_alive_interval_sec=30,
            min_reconnect_delay_ms=200,
            max_reconnect_delay_ms=1000,
            on_publish_received=self._on_publish,
            on_lifecycle_connection_success=self._on_connect,
            on_lifecycle_stopped=lambda d: self._stopped.set(),
            extended_validation_and_flow_control_options=mqtt5.ExtendedValidationAndFlowControlOptions.NONE,
            enable_metrics_collection=False,
            receive_maximum=1000,
        )

    def _on_publish(self, data: mqtt5.PublishReceivedData) -> None:
        p = data.publish_packet
        with self._lock:
            self.messages.append((p.topic, bytes(p.payload)))

    def _on_connect(self, data) -> None:
        self._connected.set()
        if not getattr(self, "_subscribed", False):
            fut: Future = self.client.subscribe(
                mqtt5.SubscribePacket(
                    subscriptions=[mqtt5.Subscription(topic_filter=self.topic, qos=mqtt5.QoS.AT_LEAST_ONCE)]
                )
            )
            fut.add_done_callback(lambda f: setattr(self, "_subscribed", True))

    def start(self, timeout_s: float = 15.0) -> Subscriber:
        self.client.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if getattr(self, "_subscribed", False):
                return self
            time.sleep(0.05)
        raise RuntimeError("test subscriber could not connect and subscribe")

    def stop(self) -> None:
        self.client.stop()
        self._stopped.wait(5)

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def telemetry_seqs(self) -> list[int]:
        seqs: list[int] = []
        for topic, payload in self.snapshot():
            if topic.endswith("/telemetry"):
                seqs.extend(r["seq"] for r in decode_telemetry(payload))
        return seqs

    def docs(self, suffix: str) -> list[dict]:
        return [orjson.loads(p) for t, p in self.snapshot() if t.endswith(suffix)]

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
