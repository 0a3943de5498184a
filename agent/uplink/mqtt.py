"""The MQTT5 link to AWS IoT Core (or any broker with TLS client certificates), through awsiotsdk.

The SDK keeps the connection up by itself (reconnects with backoff); this wrapper checks the TLS files before
connecting (a missing CA otherwise fails only after ~24 s), chooses flow control, tracks the connection state
for the asyncio side, and turns a publish into a ``concurrent.futures.Future``. It never logs key material.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import stat
import threading
from pathlib import Path
from typing import Any

from awscrt import mqtt5
from awsiot import mqtt5_client_builder

from agent.config import UplinkConfig

log = logging.getLogger("agent.uplink")


class TlsFilesError(Exception):
    """A certificate, key or CA file is missing, unreadable or not PEM; raised before any connection attempt."""


def check_tls_files(cfg: UplinkConfig) -> list[str]:
    """Validate cert/key/CA files; returns warnings (e.g. key permissions) or raises TlsFilesError."""
    warnings: list[str] = []
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
                warnings.append(f"uplink.key: {path} has mode {mode:o}; it should be 0600 (chmod 600 {path})")
    if problems:
        raise TlsFilesError("; ".join(problems))
    if cfg.cert and cfg.ca:
        try:  # a syntactically broken CA bundle fails here in milliseconds instead of at the handshake
            ssl.create_default_context(cafile=str(cfg.ca))
        except ssl.SSLError as exc:
            raise TlsFilesError(f"uplink.ca: {cfg.ca} is not a usable CA bundle: {exc}") from None
    return warnings


def flow_control_for(cfg: UplinkConfig) -> mqtt5.ExtendedValidationAndFlowControlOptions:
    iot_core = cfg.flow_control == "iot_core" or (
        cfg.flow_control == "auto" and cfg.endpoint.endswith(".amazonaws.com")
    )
    return (
        mqtt5.ExtendedValidationAndFlowControlOptions.AWS_IOT_CORE_DEFAULTS
        if iot_core
        else mqtt5.ExtendedValidationAndFlowControlOptions.NONE
    )


def puback_ok(result: Any) -> bool:
    """A QoS1 publish succeeded when the PUBACK's reason code is below 0x80 (MQTT5: 0 success, 16 no
    matching subscribers - IoT Core and mosquitto both answer 16 when no one listens, and the message is accepted)."""
    puback = getattr(result, "puback", None)
    if puback is None:
        return False
    return int(puback.reason_code) < 0x80


class MqttLink:
    """Owns the awscrt MQTT5 client. State changes are mirrored into an asyncio.Event for the uplink task."""

    def __init__(self, cfg: UplinkConfig, client_id: str, loop: asyncio.AbstractEventLoop):
        self.cfg = cfg
        self.client_id = client_id
        self.loop = loop
        self.state = "off"
        self.connected = asyncio.Event()
        self.last_error: str | None = None
        self.connects = 0
        self._lock = threading.Lock()
        self._client: mqtt5.Client | None = None
        self._stopped = threading.Event()

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

    def _on_stopped(self, data: Any) -> None:
        self._set_state("stopped")
        self._stopped.set()

    def start(self) -> None:
        for w in check_tls_files(self.cfg):
            log.warning("%s", w)
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

    def publish(self, topic: str, payload: bytes, qos1: bool = True):
        """Returns the SDK's concurrent.futures.Future; its result has ``puback`` for QoS1."""
        assert self._client is not None
        return self._client.publish(
            mqtt5.PublishPacket(
                topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE if qos1 else mqtt5.QoS.AT_MOST_ONCE
            )
        )

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._client is None:
            return
        try:  # an explicit DISCONNECT: without it awscrt just closes the socket (the broker logs a dropped client)
            self._client.stop(mqtt5.DisconnectPacket(reason_code=mqtt5.DisconnectReasonCode.NORMAL_DISCONNECTION))
        except Exception as exc:  # noqa: BLE001 - shutting down; nothing left to protect
            log.debug("mqtt stop: %s", exc)
        self._stopped.wait(timeout_s)
        self._client = None


def _describe(exc: Any) -> str:
    if exc is None:
        return "none"
    name = getattr(exc, "name", None)
    return f"{name}: {exc}" if name else str(exc)
