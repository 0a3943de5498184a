"""The agent's configuration: one TOML file, validated by pydantic v2.

``load_config(path)`` returns an ``AgentConfig`` or raises ``ConfigError`` listing *every* problem as
``file: key: what is expected``. Without a file the embedded default runs the simulator with the uplink off.
Driver sections are validated by the driver's own model (found by ``type`` in the registry), so a driver owns
its options and the agent stays generic.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.config.sections import (
    TOPIC_PREFIX,
    DashboardConfig,
    LogConfig,
    Range,
    StoreConfig,
    Strict,
    SupervisorConfig,
    UplinkConfig,
    ValidateConfig,
    is_loopback_host,
    is_thing_name,
)
from agent.config.twin import TwinAlarmConfig, TwinCellConfig, TwinConfig
from agent.remote.config import RemoteConfig, merge_layer
from drivers.base import CONFIG_DIR, DriverConfig
from drivers.registry import get_driver_class
from drivers.tomlfile import TomlFileError, read_toml

__all__ = [
    "DEFAULT_CONFIG_TOML",
    "TOPIC_PREFIX",
    "AgentConfig",
    "ConfigError",
    "DashboardConfig",
    "LogConfig",
    "Range",
    "RemoteConfig",
    "StoreConfig",
    "SupervisorConfig",
    "TwinAlarmConfig",
    "TwinCellConfig",
    "TwinConfig",
    "UplinkConfig",
    "ValidateConfig",
    "is_loopback_host",
    "is_thing_name",
    "load_config",
    "parse_config",
]

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
history_ageing_acceleration = 12.0  # fast enough that each NMC cell bends into its knee (cycles ~65-90)
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
