"""The shadow and jobs stand-ins (``tests/support/awsiot.py``) on the test broker: mosquitto with TLS client
certificates stands in for IoT Core's broker, this client for the Device Shadow and Jobs services behind it (AWS
itself cannot run here). The agent talks to it over its real MQTT connection.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from awscrt import mqtt5
from awsiot import mqtt5_client_builder

from tests.support.awsiot import Out, Services

REQUEST_FILTERS = [
    "$aws/things/+/shadow/name/+/update",
    "$aws/things/+/shadow/name/+/get",
    "$aws/things/+/jobs/start-next",
    "$aws/things/+/jobs/+/update",
]


class IotCloud:
    def __init__(self, port: int, ca: Path, cert: Path, key: Path, services: Services | None = None):
        self.services = services or Services()
        self._subscribed = threading.Event()
        self._stopped = threading.Event()
        self.client = mqtt5_client_builder.mtls_from_path(
            endpoint="localhost",
            port=port,
            cert_filepath=str(cert),
            pri_key_filepath=str(key),
            ca_filepath=str(ca),
            client_id="aws-iot-services-stand-in",
            session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
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

    def _on_connect(self, data: Any) -> None:
        fut = self.client.subscribe(
            mqtt5.SubscribePacket(
                subscriptions=[mqtt5.Subscription(topic_filter=f, qos=mqtt5.QoS.AT_LEAST_ONCE) for f in REQUEST_FILTERS]
            )
        )
        fut.add_done_callback(lambda f: self._subscribed.set() if not f.exception() else None)

    def _on_publish(self, data: mqtt5.PublishReceivedData) -> None:
        p = data.publish_packet
        self.send(self.services.handle(p.topic, bytes(p.payload or b"")))

    def send(self, messages: Out) -> None:
        for topic, payload in messages:
            self.client.publish(mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE))

    def start(self, timeout_s: float = 15.0) -> IotCloud:
        self._subscribed.clear()
        self.client.start()
        if not self._subscribed.wait(timeout_s):
            raise RuntimeError("the shadow/jobs stand-in could not connect to the test broker and subscribe")
        return self

    def stop(self) -> None:
        self.client.stop()
        self._stopped.wait(5)

    # ---------------------------------------------------------------- what an operator does in the cloud
    def set_desired(self, thing: str, desired: dict[str, Any] | None, name: str = "config") -> int:
        """UpdateThingShadow with a desired state; returns the new shadow version."""
        out = self.services.shadow.update_desired(thing, name, desired)
        self.send(out)
        return int(json.loads(out[0][1])["version"])

    def create_job(self, thing: str, job_id: str, document: dict[str, Any]) -> None:
        self.send(self.services.jobs.create_job(thing, job_id, document))

    def wait_job(self, thing: str, job_id: str, timeout_s: float, statuses: tuple[str, ...] = ("SUCCEEDED", "FAILED")):
        deadline = time.monotonic() + timeout_s
        while True:
            e = self.services.jobs.execution(thing, job_id)
            if e.status in statuses:
                return e
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is {e.status} after {timeout_s} s (history {e.history})")
            time.sleep(0.05)

    def reported(self, thing: str, name: str = "config") -> dict[str, Any]:
        sh = self.services.shadow.document(thing, name)
        return dict(sh.reported or {}) if sh is not None else {}
