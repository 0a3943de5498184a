"""The MQTT5 link to AWS IoT Core (or any broker with TLS client certificates), through awsiotsdk: the real
``Link`` (link.py).

The SDK keeps the connection up by itself (reconnects with backoff); this wrapper checks the TLS files before
connecting (a missing CA otherwise fails only after ~24 s; a private key that other users can read is refused,
as ``doctor`` does), chooses flow control, mirrors the connection state into the asyncio side, and turns the SDK's
publish future (completed on the SDK's thread) into an asyncio future of the PUBACK's reason code. Messages received
on subscribed topics (the remote parts' shadow and jobs topics) are handed to the loop. It never logs key material.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import stat
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from awscrt import mqtt5
from awsiot import mqtt5_client_builder

from agent.config import UplinkConfig
from agent.uplink.link import MessageHandler, PublishFailed

log = logging.getLogger("agent.uplink")


class TlsFilesError(Exception):
    """A certificate, key or CA file is missing, unreadable, not PEM, or (the key) readable by other users;
    raised before any connection attempt."""


def check_tls_files(cfg: UplinkConfig) -> None:
    """Validate cert/key/CA files or raise TlsFilesError naming every problem and its fix."""
    problems: list[str] = []
    for key, marker in (
        ("cert", b"-----BEGIN CERTIFICATE-----"),
        ("key", b"PRIVATE KEY-----"),
        ("ca", b"-----BEGIN CERTIFICATE-----"),
    ):
        path: Path | None = getattr(cfg, key)
        if path is None:
            problems.append(f"uplink.{key}: not set")
            continue
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            problems.append(f"uplink.{key}: file {path} does not exist")
            continue
        except PermissionError:
            problems.append(f"uplink.{key}: file {path} is not readable by this user (uid {os.getuid()})")
            continue
        except OSError as exc:
            problems.append(f"uplink.{key}: cannot read {path}: {exc.strerror}")
            continue
        if marker not in data:
            problems.append(f"uplink.{key}: {path} is not a PEM {'private key' if key == 'key' else 'certificate'}")
        if key == "key":
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                problems.append(
                    f"uplink.key: {path} has mode {mode:04o}: other users can read the private key; "
                    f"refusing to use it (fix: chmod 600 {path})"
                )
    if problems:
        raise TlsFilesError("; ".join(problems))
    if cfg.cert and cfg.ca:
        try:  # a syntactically broken CA bundle fails here in milliseconds instead of at the handshake
            ssl.create_default_context(cafile=str(cfg.ca))
        except ssl.SSLError as exc:
            raise TlsFilesError(f"uplink.ca: {cfg.ca} is not a usable CA bundle: {exc}") from None


def flow_control_for(cfg: UplinkConfig) -> mqtt5.ExtendedValidationAndFlowControlOptions:
    iot_core = cfg.flow_control == "iot_core" or (
        cfg.flow_control == "auto" and cfg.endpoint.endswith(".amazonaws.com")
    )
    return (
        mqtt5.ExtendedValidationAndFlowControlOptions.AWS_IOT_CORE_DEFAULTS
        if iot_core
        else mqtt5.ExtendedValidationAndFlowControlOptions.NONE
    )


class MqttLink:
    """Owns the awscrt MQTT5 client. State changes are mirrored into an asyncio.Event for the uplink task."""

    def __init__(self, cfg: UplinkConfig, client_id: str, loop: asyncio.AbstractEventLoop):
        self.cfg = cfg
        self.client_id = client_id
        self.loop = loop
        self.state = "off"  # written on the SDK's thread under the lock; a str read is atomic
        self.connected = asyncio.Event()
        self.last_error: str | None = None
        self.connects = 0
        self._lock = threading.Lock()
        self._client: mqtt5.Client | None = None
        self._stopped = threading.Event()
        self._handlers: list[MessageHandler] = []

    # -- lifecycle callbacks run on the SDK's event-loop thread
    def _set_state(self, state: str, error: str | None = None) -> None:
        with self._lock:
            self.state = state
            if error:
                self.last_error = error

        def apply() -> None:
            if state == "connected":
                self.connected.set()
            else:
                self.connected.clear()

        try:
            self.loop.call_soon_threadsafe(apply)
        except RuntimeError:  # loop closed during shutdown
            pass

    def _on_success(self, data: mqtt5.LifecycleConnectSuccessData) -> None:
        self.connects += 1
        log.info("uplink connected endpoint=%s port=%d client_id=%s", self.cfg.endpoint, self.cfg.port, self.client_id)
        self._set_state("connected")

    def _on_failure(self, data: mqtt5.LifecycleConnectFailureData) -> None:
        err = _describe(data.exception)
        if self.state != "disconnected" or err != self.last_error:
            log.warning(
                "uplink cannot connect endpoint=%s port=%d error=%s (readings keep accumulating in the store)",
                self.cfg.endpoint,
                self.cfg.port,
                err,
            )
        self._set_state("disconnected", err)

    def _on_disconnect(self, data: mqtt5.LifecycleDisconnectData) -> None:
        err = _describe(data.exception)
        log.warning("uplink disconnected error=%s", err)
        self._set_state("disconnected", err)

    def _on_publish(self, data: mqtt5.PublishReceivedData) -> None:
        packet = data.publish_packet
        topic, payload = str(packet.topic), bytes(packet.payload or b"")
        try:
            self.loop.call_soon_threadsafe(self._dispatch, topic, payload)
        except RuntimeError:  # the loop is closed: shutting down
            pass

    def _dispatch(self, topic: str, payload: bytes) -> None:
        for handler in list(self._handlers):
            try:
                handler(topic, payload)
            except Exception:
                log.exception("handler for a message on %s failed", topic)

    def on_message(self, handler: MessageHandler) -> None:
        self._handlers.append(handler)

    def _on_stopped(self, data: Any) -> None:
        self._set_state("stopped")
        self._stopped.set()

    def start(self) -> None:
        check_tls_files(self.cfg)
        cfg = self.cfg
        self._client = mqtt5_client_builder.mtls_from_path(
            endpoint=cfg.endpoint,
            port=cfg.port,
            cert_filepath=str(cfg.cert),
            pri_key_filepath=str(cfg.key),
            ca_filepath=str(cfg.ca),
            client_id=self.client_id,
            clean_session=True,
            keep_alive_interval_sec=cfg.keep_alive_s,
            ping_timeout_ms=cfg.ping_timeout_ms,
            ack_timeout_sec=cfg.ack_timeout_s,
            connack_timeout_ms=int(cfg.connect_timeout_s * 1000),
            min_reconnect_delay_ms=500,
            max_reconnect_delay_ms=30_000,
            session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
            offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_QOS0_PUBLISH_ON_DISCONNECT,
            extended_validation_and_flow_control_options=flow_control_for(cfg),
            on_lifecycle_connection_success=self._on_success,
            on_lifecycle_connection_failure=self._on_failure,
            on_lifecycle_disconnection=self._on_disconnect,
            on_lifecycle_stopped=self._on_stopped,
            on_publish_received=self._on_publish,
            enable_metrics_collection=False,
        )
        self._set_state("connecting")
        log.info(
            "uplink starting endpoint=%s port=%d client_id=%s flow_control=%s",
            cfg.endpoint,
            cfg.port,
            self.client_id,
            flow_control_for(cfg).name,
        )
        self._client.start()

    def publish(self, topic: str, payload: bytes) -> asyncio.Future[int]:
        """QoS1 publish; an asyncio future of the PUBACK's reason code (``PublishFailed`` without a PUBACK)."""
        fut: asyncio.Future[int] = self.loop.create_future()
        client = self._client
        if client is None:
            fut.set_exception(PublishFailed("the MQTT client is not running"))
            return fut
        try:
            sdk = client.publish(mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE))
        except Exception as exc:  # noqa: BLE001 - the SDK refused synchronously (stopped, packet too large)
            fut.set_exception(PublishFailed(_describe(exc)))
            return fut

        def done(f: Future[Any]) -> None:  # on the SDK's thread
            try:
                self.loop.call_soon_threadsafe(_settle, fut, f)
            except RuntimeError:  # the loop is closed: shutting down, the store will resend this range
                pass

        sdk.add_done_callback(done)
        return fut

    def subscribe(self, topic_filters: list[str]) -> asyncio.Future[list[int]]:
        """QoS1 SUBSCRIBE; an asyncio future of the SUBACK's reason codes (``PublishFailed`` without a SUBACK)."""
        fut: asyncio.Future[list[int]] = self.loop.create_future()
        client = self._client
        if client is None:
            fut.set_exception(PublishFailed("the MQTT client is not running"))
            return fut
        packet = mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(topic_filter=f, qos=mqtt5.QoS.AT_LEAST_ONCE) for f in topic_filters]
        )
        try:
            sdk = client.subscribe(packet)
        except Exception as exc:  # noqa: BLE001 - refused synchronously (stopped, invalid filter)
            fut.set_exception(PublishFailed(_describe(exc)))
            return fut

        def done(f: Future[Any]) -> None:  # on the SDK's thread
            try:
                self.loop.call_soon_threadsafe(_settle_suback, fut, f)
            except RuntimeError:  # the loop is closed
                pass

        sdk.add_done_callback(done)
        return fut

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._client is None:
            return
        try:  # an explicit DISCONNECT: without it awscrt just closes the socket (the broker logs a dropped client)
            self._client.stop(mqtt5.DisconnectPacket(reason_code=mqtt5.DisconnectReasonCode.NORMAL_DISCONNECTION))
        except Exception as exc:  # noqa: BLE001 - shutting down; nothing left to protect
            log.debug("mqtt stop: %s", exc)
        self._stopped.wait(timeout_s)
        self._client = None


def _settle(fut: asyncio.Future[int], sdk: Future[Any]) -> None:
    """On the loop: the SDK's outcome into the asyncio future (unless the uplink gave up on it already)."""
    if fut.done():
        return
    try:
        puback = getattr(sdk.result(), "puback", None)
    except Exception as exc:  # noqa: BLE001 - AWS_ERROR_MQTT_TIMEOUT, connection lost, user-requested stop, ...
        fut.set_exception(PublishFailed(_describe(exc)))
        return
    if puback is None:
        fut.set_exception(PublishFailed("no PUBACK in the publish result"))
    else:
        fut.set_result(int(puback.reason_code))


def _settle_suback(fut: asyncio.Future[list[int]], sdk: Future[Any]) -> None:
    if fut.done():
        return
    try:
        codes = [int(c) for c in sdk.result().reason_codes]
    except Exception as exc:  # noqa: BLE001 - timeout, connection lost, stopped
        fut.set_exception(PublishFailed(_describe(exc)))
        return
    fut.set_result(codes)


def _describe(exc: Any) -> str:
    if exc is None:
        return "none"
    name = getattr(exc, "name", None)
    return f"{name}: {exc}" if name else str(exc)
