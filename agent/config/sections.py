"""The sections of the agent's config (``[store]``, ``[uplink]``, ``[validate]``, ``[log]``, ``[supervisor]``,
``[dashboard]``) and the rules they share: every model is strict (an unknown key is an error, not ignored)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from drivers.base import config_relative

THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")  # AWS IoT thing-name alphabet; use is_thing_name()


def is_thing_name(text: str) -> bool:
    """The whole of ``text`` is an AWS IoT thing name (``fullmatch``: ``$`` would let a trailing newline pass)."""
    return THING_NAME.fullmatch(text) is not None


TOPIC_PREFIX = re.compile(r"(?=.{1,96}\Z)[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+){0,5}")  # same rule in terraform/modules


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class StoreConfig(Strict):
    path: Path = Field(Path("var/battery-twin.db"), description="SQLite database file")
    synchronous: Literal["FULL", "NORMAL", "EXTRA"] = Field(
        "FULL", description="FULL: a committed batch survives a power cut; NORMAL: may lose the last commits"
    )
    max_bytes: int = Field(2 * 1024**3, ge=1024 * 1024, description="cap on the database size in bytes")
    keep_sent_s: float = Field(3600.0, ge=0, description="how long acknowledged readings stay for local views")
    min_free_bytes: int = Field(
        32 * 1024**2, ge=0, description="keep this much room on the filesystem; below it the drop policy applies"
    )
    maintenance_interval_s: float = Field(10.0, gt=0, le=3600)

    @field_validator("synchronous", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class UplinkConfig(Strict):
    endpoint: str = Field("", description="IoT Core ATS endpoint (xxxx-ats.iot.REGION.amazonaws.com); empty = off")
    port: int = Field(8883, ge=1, le=65535)
    cert: Path | None = Field(None, description="device certificate (PEM)")
    key: Path | None = Field(None, description="device private key (PEM, mode 0600)")
    ca: Path | None = Field(None, description="CA bundle (PEM), e.g. AmazonRootCA1.pem")
    topic_prefix: str = Field("dt/battery-twin", description="topics are <prefix>/<rig>/<stream>")
    basic_ingest_rule: str = Field(
        "", pattern=r"^[A-Za-z0-9_]*$", description="IoT rule name: publish telemetry to $aws/rules/<rule>/... "
    )
    envelope: Literal["compact", "records"] = Field(
        "compact", description="telemetry envelope: 'compact' (v2, ~30 B/reading) or 'records' (v1, flat records)"
    )
    message_target_bytes: int = Field(
        15 * 1024 - 512,
        ge=512,
        le=126 * 1024,
        description="pack messages up to this size (IoT Core meters in 5 KB units)",
    )
    backlog_message_bytes: int = Field(
        60 * 1024 - 512,
        ge=512,
        le=126 * 1024,
        description="message size while draining a backlog: larger messages get closer to IoT Core's 512 KB/s",
    )
    linger_ms: int = Field(  # events, cycles and health never wait; the local dashboard reads the store
        120_000, ge=0, le=600_000, description="wait up to this long for a message to fill before sending it part-full"
    )
    max_in_flight: int = Field(100, ge=1, le=100, description="unacknowledged QoS1 publishes (IoT Core: 100)")
    flow_control: Literal["auto", "iot_core", "none"] = Field(
        "auto", description="SDK flow control: auto = IoT Core limits when the endpoint is *.amazonaws.com"
    )
    keep_alive_s: int = Field(30, ge=5, le=1200, description="MQTT keep-alive (IoT Core accepts 30..1200)")
    ping_timeout_ms: int = Field(15_000, ge=1000, le=120_000)
    ack_timeout_s: int = Field(45, ge=1, le=3600, description="a PUBACK not seen by then: publish again")
    health_interval_s: float = Field(30.0, ge=1, le=86400, description="health computed, logged, checked for change")
    health_heartbeat_s: float = Field(
        150.0, ge=1, le=86400, description="health published at least this often (or each interval)"
    )
    basic_ingest_health_rule: str = Field(
        "", pattern=r"^[A-Za-z0-9_]*$", description="IoT rule name: publish health to $aws/rules/<rule>/... "
    )
    connect_timeout_s: float = Field(30.0, ge=1, le=600)

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix(cls, v: str) -> str:
        """A wildcard would widen the IoT policy (built from the same prefix) and the rules; the terraform modules
        apply the same rule. 1-6 levels and <= 96 characters: every thing name still fits IoT Core's 7 slashes
        and 256 bytes per topic."""
        if not TOPIC_PREFIX.fullmatch(v):
            raise ValueError(
                "must be 1-6 levels of letters, digits, '_' and '-' joined by '/', at most 96 characters "
                "(no MQTT or policy wildcard '+', '#', '*', '?', no empty level, no leading or trailing '/')"
            )
        return v

    @model_validator(mode="after")
    def _health_cadence(self) -> UplinkConfig:
        from agent.healthcadence import cadence_problem

        problem = cadence_problem(self.linger_ms, self.health_interval_s, self.health_heartbeat_s)
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _files_when_enabled(self) -> UplinkConfig:
        if self.endpoint:
            missing = [k for k in ("cert", "key", "ca") if getattr(self, k) is None]
            if missing:
                raise ValueError(
                    f"uplink.endpoint is set, so {', '.join('uplink.' + m for m in missing)} "
                    "must be set too (paths to PEM files)"
                )
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint)


class Range(Strict):
    min: float
    max: float

    @model_validator(mode="after")
    def _order(self) -> Range:
        if not self.min < self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self


class ValidateConfig(Strict):
    """Plausibility ranges: readings outside are kept and flagged OUT_OF_RANGE, never dropped or clipped."""

    voltage_v: Range = Range(min=0.0, max=5.5)
    current_a: Range = Range(min=-2000.0, max=2000.0)
    temperature_c: Range = Range(min=-40.0, max=120.0)
    repeat_s: float = Field(3600.0, gt=0, description="at most one out-of-range event per cell and field this often")


class LogConfig(Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["kv", "json"] = "kv"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class SupervisorConfig(Strict):
    backoff_initial_s: float = Field(1.0, gt=0, le=600)
    backoff_max_s: float = Field(60.0, gt=0, le=3600)
    stable_after_s: float = Field(60.0, gt=0, description="a run this long resets the backoff")


def is_loopback_host(host: str) -> bool:
    """True for names/addresses that only this machine can reach (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other name may resolve beyond loopback


class DashboardConfig(Strict):
    """The local web dashboard (agent/dashboard). Off unless enabled; the embedded default enables it."""

    enabled: bool = Field(False, description="serve the dashboard (needs the [dashboard] extra: aiohttp)")
    host: str = Field("127.0.0.1", min_length=1, description="bind address; beyond loopback requires a token")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0 = any free port, logged at start)")
    token: SecretStr = Field(
        SecretStr(""),
        description="shared secret (>= 16 characters) asked of every request; required when host is not loopback",
    )
    update_interval_s: float = Field(1.0, ge=0.1, le=10.0, description="how often live data is pushed")
    window_s: float = Field(300.0, ge=10.0, le=3600.0, description="how much recent history the live view shows")
    max_clients: int = Field(8, ge=1, le=64, description="concurrent live streams at most")
    tls_cert: Path | None = Field(None, description="PEM certificate (chain): serve HTTPS; needed beyond loopback")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert (mode 0600)")
    allow_plain_http: bool = Field(False, description="serve plain HTTP beyond loopback: the token travels in clear")

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _relative_to_config(cls, v: Path | None) -> Path | None:
        return None if v is None else config_relative(v)

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> DashboardConfig:
        token = self.token.get_secret_value()
        if token and len(token) < 16:
            raise ValueError(
                "dashboard.token must be at least 16 characters (e.g. the output of "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(24))'`)"
            )
        if self.enabled and not token and not is_loopback_host(self.host):
            raise ValueError(
                f"dashboard.host = {self.host!r} is reachable beyond loopback, so dashboard.token "
                "must be set; the dashboard refuses to start without it (or bind to 127.0.0.1)"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("dashboard.tls_cert and dashboard.tls_key go together: set both or neither")
        if self.enabled and self.tls_cert is None and not self.allow_plain_http and not is_loopback_host(self.host):
            raise ValueError(
                f"dashboard.host = {self.host!r} is reachable beyond loopback, so set dashboard.tls_cert and "
                "dashboard.tls_key (HTTPS: the token and the data must not cross the network in clear), or "
                "allow_plain_http = true to accept that on a network you trust"
            )
        return self
