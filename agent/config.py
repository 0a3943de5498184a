"""The agent's configuration: one TOML file, validated by pydantic v2.

``load_config(path)`` returns an ``AgentConfig`` or raises ``ConfigError`` listing *every* problem as
``file: key: what is expected``. Without a file the embedded default runs the simulator with the uplink off.
Driver sections are validated by the driver's own model (found by ``type`` in the registry), so a driver owns
its options and the agent stays generic.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from agent.remote.config import RemoteConfig, merge_layer
from drivers.base import CONFIG_DIR, DriverConfig, config_relative
from drivers.registry import get_driver_class
from drivers.tomlfile import TomlFileError, read_toml

THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")  # AWS IoT thing-name alphabet; use is_thing_name()


def is_thing_name(text: str) -> bool:
    """The whole of ``text`` is an AWS IoT thing name (``fullmatch``: ``$`` would let a trailing newline pass)."""
    return THING_NAME.fullmatch(text) is not None


TOPIC_PREFIX = re.compile(r"(?=.{1,96}\Z)[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+){0,5}")  # same rule in terraform/modules

DEFAULT_CONFIG_TOML = """\
# battery-twin default: a simulated rig of 8 cells of two chemistries, store under ./var, uplink off until an
# endpoint is set (`battery-twin provision`). Print it with `battery-twin config default`; edit a copy and run
# `battery-twin run --config FILE`.
rig = "sim-rig-01"

[store]
path = "var/battery-twin.db"

# Each simulated driver starts with a simulated past: history_cycles cycles generated at start-up (a few seconds),
# with ageing history_ageing_acceleration times faster, stamped so that they end now. Those readings and cycles go
# through the store and the uplink like live ones; health shows them as simulated history. Once the store holds
# cycles of these cells, a restart continues from there instead of making a new past.
[[drivers]]
type = "simulator"
name = "sim-nmc"
cells = 4
cell_prefix = "nmc"
chemistry = "nmc811"
charge_c_rate = 1.0
rest_s = 60
history_cycles = 120
history_sample_s = 120
history_ageing_acceleration = 4.0
seed = 1

[[drivers]]
type = "simulator"
name = "sim-lfp"
cells = 4
cell_prefix = "lfp"
chemistry = "lfp"
charge_c_rate = 1.0
rest_s = 60
history_cycles = 120
history_sample_s = 120
history_ageing_acceleration = 15.0
seed = 2

# Local dashboard on http://127.0.0.1:8080/ (loopback only; binding beyond loopback needs a token).
[dashboard]
enabled = true

[twin]
max_gap_s = 150  # the simulated past is sampled every 120 s: the twin integrates across it
"""


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


class TwinCellConfig(Strict):
    """What the twin assumes about the cells of one driver (or one cell); unset keys fall back to [twin]."""

    chemistry: str | None = Field(
        None, description="chemistry parameter file name in simulator/params, e.g. 'nmc811', 'lfp'"
    )
    nominal_capacity_ah: float | None = Field(None, gt=0, le=5000)

    @field_validator("chemistry")
    @classmethod
    def _known_chemistry(cls, v: str | None) -> str | None:
        if v is not None:
            from simulator.chemistry import available

            if v not in available():
                raise ValueError(f"unknown chemistry {v!r}; known: {', '.join(available())}")
        return v


class TwinAlarmConfig(Strict):
    """Anomaly thresholds. Each (cell, kind) raises at most one event per ``repeat_s`` while the condition lasts."""

    voltage_residual_mv: float = Field(
        40.0,
        gt=0,
        description="|measured - twin-predicted voltage|, smoothed "
        "(assumes the chemistry file describes the cells; raise it for generic ones)",
    )
    voltage_noise_mv: float = Field(25.0, gt=0, description="RMS of the voltage residual, smoothed")
    residual_window_s: float = Field(60.0, gt=0, description="smoothing time constant of the residuals")
    residual_max_step_s: float = Field(
        10.0, gt=0, description="samples further apart than this do not feed the residual alarms (coarse data)"
    )
    max_temperature_c: float = Field(60.0, description="over-temperature alarm")
    thermal_rate_c_per_min: float = Field(
        1.5, gt=0, description="temperature rise rate the twin's Joule-heating and cooling model does not explain"
    )
    thermal_window_s: float = Field(120.0, gt=0)
    capacity_outlier_fraction: float = Field(
        0.05, gt=0, lt=1, description="discharge capacity this fraction below the median of its sibling cells"
    )
    resistance_outlier_fraction: float = Field(
        0.5, gt=0, description="DC resistance this fraction above the siblings' median"
    )
    coulombic_efficiency_drop: float = Field(
        0.02, gt=0, lt=1, description="coulombic efficiency this far below the siblings' median"
    )
    min_siblings: int = Field(3, ge=2, description="cells of the same driver needed for a sibling comparison")
    stuck_s: float = Field(300.0, gt=0, description="a voltage reading unchanged this long under current")
    dropout_fraction: float = Field(0.2, gt=0, le=1, description="share of missing values over dropout_window_s")
    dropout_window_s: float = Field(300.0, gt=0)
    warmup_s: float = Field(300.0, ge=0, description="no residual alarms this long after a cell is first seen")
    repeat_s: float = Field(3600.0, gt=0, description="at most one event per cell and kind in this interval")


class TwinConfig(Strict):
    """The digital twin: SOC (EKF), cycles, per-cycle summaries, predictions, anomalies."""

    enabled: bool = True
    chemistry: str = Field("nmc811", description="default chemistry (a simulator driver's own setting wins)")
    nominal_capacity_ah: float | None = Field(None, gt=0, le=5000, description="default: the chemistry's")
    drivers: dict[str, TwinCellConfig] = Field(default_factory=dict, description="per driver name")
    cells: dict[str, TwinCellConfig] = Field(default_factory=dict, description="per cell id (capacity only)")
    ambient_c: float | None = Field(
        None, description="ambient temperature for the thermal model; default: estimated from the coolest cells"
    )
    eol_fraction: float = Field(0.8, gt=0, lt=1, description="end of life at this fraction of nominal capacity")
    rest_c_rate: float = Field(0.02, gt=0, description="|current| below this C-rate counts as rest")
    min_cycle_discharge_fraction: float = Field(
        0.1, gt=0, le=1, description="a discharge smaller than this fraction of nominal does not close a cycle (pulses)"
    )
    cycle_life_model: Path | None = Field(None, description="ONNX file; default: the shipped cycle_life.onnx")
    soh_model: Path | None = Field(
        None, description="SOH model file (<name>.refs, its <name>.json beside it); default: the shipped soh.refs"
    )
    forecast_cycles: int = Field(100, ge=1, le=2000, description="predicted_capacity_ah covers the next N cycles")
    qdv_every_cycles: int = Field(50, ge=1, description="publish Qd(V) every N cycles (and on the model's cycles)")
    qdv_max_points: int = Field(2048, ge=64, le=65536, description="discharge samples kept per cell and cycle")
    history_cycles: int = Field(500, ge=10, le=100_000, description="capacity history kept per cell")
    max_gap_s: float = Field(60.0, gt=0, description="a longer gap between a cell's samples is not integrated")
    alarms: TwinAlarmConfig = TwinAlarmConfig()

    @field_validator("chemistry")
    @classmethod
    def _known_chemistry(cls, v: str) -> str:
        return TwinCellConfig._known_chemistry(v) or v


class AgentConfig(Strict):
    rig: str = Field(description="rig id = AWS IoT thing name = MQTT client id")
    store: StoreConfig = StoreConfig()
    uplink: UplinkConfig = UplinkConfig()
    drivers: list[DriverConfig] = Field(default_factory=list)
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    log: LogConfig = LogConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    dashboard: DashboardConfig = DashboardConfig()
    twin: TwinConfig = TwinConfig()
    remote: RemoteConfig = RemoteConfig()

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("rig")
    @classmethod
    def _thing_name(cls, v: str) -> str:
        if not is_thing_name(v):
            raise ValueError("must be an AWS IoT thing name: 1-128 of letters, digits, ':', '_', '-'")
        return v

    @field_validator("drivers", mode="before")
    @classmethod
    def _driver_models(cls, v: Any) -> Any:
        """Validate each driver section with its own driver's model, so errors name the driver's keys."""
        if not isinstance(v, list):
            return v
        out = []
        for section in v:
            if isinstance(section, DriverConfig):
                out.append(section)
                continue
            if not isinstance(section, dict) or "type" not in section:
                raise ValueError("each [[drivers]] section needs a 'type' (e.g. 'simulator', 'modbus')")
            try:
                model = get_driver_class(str(section["type"])).config_model
            except (KeyError, ImportError, TypeError) as exc:
                raise ValueError(str(exc).strip("'\"")) from None
            out.append(model.model_validate(section))
        return out

    @model_validator(mode="after")
    def _unique_driver_names(self) -> AgentConfig:
        seen: set[str] = set()
        for d in self.drivers:
            if not d.name:
                d.name = d.type if d.type not in seen else f"{d.type}-{len(seen) + 1}"
            if d.name in seen:
                raise ValueError(f"driver name {d.name!r} is used twice; give each [[drivers]] a unique name")
            seen.add(d.name)
        return self


class ConfigError(Exception):
    """Every problem in a config file, one per line: ``file: key: what is expected``."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(("function-", "tagged-union")):
            continue
        else:
            out += ("." if out else "") + ("validate" if part == "validate_" else str(part))
    return out or "(top level)"


def _short_repr(value: Any, limit: int = 200) -> str:
    """The offending value as the message quotes it, cut short: a pasted megabyte is not repeated back."""
    try:
        text = repr(value)
    except RecursionError:
        return f"<a {type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _problems(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        got = err.get("input")
        got_s = "" if isinstance(got, dict) or err["type"] == "missing" else f" (got {_short_repr(got)})"
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{_loc(prefix + tuple(err['loc']))}: {msg}{got_s}")
    return out


def parse_config(data: dict[str, Any], source: str = "<config>") -> AgentConfig:
    """Validate a parsed config; every problem (drivers included, each by its own model) is reported at once."""
    problems: list[str] = []
    data = dict(data)
    raw_drivers = data.pop("drivers", [])
    drivers: list[DriverConfig] = []
    if not isinstance(raw_drivers, list):
        problems.append("drivers: must be an array of tables, written [[drivers]]")
        raw_drivers = []
    for i, section in enumerate(raw_drivers):
        if not isinstance(section, dict) or "type" not in section:
            problems.append(f"drivers[{i}].type: missing; each [[drivers]] needs a type (e.g. 'simulator', 'modbus')")
            continue
        try:
            model = get_driver_class(str(section["type"])).config_model
        except (KeyError, ImportError, TypeError) as exc:
            problems.append(f"drivers[{i}].type: {str(exc).strip(chr(34) + chr(39))}")
            continue
        try:
            drivers.append(model.model_validate(section))
        except ValidationError as exc:
            problems.extend(_problems(exc, ("drivers", i)))
    try:
        cfg = AgentConfig.model_validate({**data, "drivers": drivers})
    except ValidationError as exc:
        problems.extend(_problems(exc))
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load_config(path: str | Path | None, layer: dict[str, Any] | None = None) -> AgentConfig:
    """Load and validate a TOML config file (with a remote ``layer`` merged over it); ``None``: the default."""
    if path is None:
        return parse_config(tomllib.loads(DEFAULT_CONFIG_TOML), "<default>")
    p = Path(path)
    try:  # size, encoding and nesting capped: a hostile or mistaken file is a config error, never a crash
        data = read_toml(p)
    except TomlFileError as exc:
        raise ConfigError(str(p), [exc.problem]) from None
    data = merge_layer(data, layer) if layer else data
    # Relative paths in a config file are relative to that file, so a service finds them from any cwd.
    base = p.resolve().parent
    token = CONFIG_DIR.set(base)  # drivers resolve their own paths (profiles, DBC files) against it
    try:
        cfg = parse_config(data, str(p))
    finally:
        CONFIG_DIR.reset(token)
    if not cfg.store.path.is_absolute():
        cfg.store.path = base / cfg.store.path
    for key in ("cert", "key", "ca"):
        v = getattr(cfg.uplink, key)
        if v is not None and not v.is_absolute():
            setattr(cfg.uplink, key, base / v)
    for key in ("cycle_life_model", "soh_model"):
        v = getattr(cfg.twin, key)
        if v is not None and not v.is_absolute():
            setattr(cfg.twin, key, base / v)
    return cfg
