"""The remote layer on disk: what the shadow last set and the agent confirmed, and the config it makes.

``<state_dir>/remote/shadow.json`` holds the *confirmed* layer (written atomically only after a change stayed healthy
for ``confirm_s``) and the last outcome. At start and on SIGHUP the agent runs the local file with the confirmed layer
merged over it, so a restart without network runs what was confirmed. If the file changed since so that the layer no
longer fits (narrower ``allow``, a validation problem), the file alone runs and an event says why.
"""

from __future__ import annotations

import logging
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, ConfigError, load_config
from agent.files import read_json, write_json_atomic
from agent.remote.config import layer_problems, leaf_paths
from drivers.base import Event

log = logging.getLogger("agent.remote")

STATE_FILE = Path("remote") / "shadow.json"


def state_dir(cfg: AgentConfig) -> Path:
    return cfg.remote.state_path(cfg.store.path)


@dataclass
class ShadowState:
    layer: dict[str, Any] = field(default_factory=dict)  # the confirmed layer
    version: int = 0  # shadow document version it came from (0: none, the file alone)
    confirmed_at_ms: int = 0
    last: dict[str, Any] = field(default_factory=dict)  # last outcome, as reported

    @classmethod
    def load(cls, directory: Path) -> ShadowState:
        path = directory / STATE_FILE
        try:
            doc = read_json(path)
        except ValueError as exc:
            log.error("remote: %s is unreadable (%s); running the local file alone", path, exc)
            return cls()
        if not isinstance(doc, dict):
            return cls()
        layer, last = doc.get("layer"), doc.get("last")
        return cls(
            layer=layer if isinstance(layer, dict) else {},
            version=int(doc.get("version") or 0),
            confirmed_at_ms=int(doc.get("confirmed_at_ms") or 0),
            last=last if isinstance(last, dict) else {},
        )

    def save(self, directory: Path) -> None:
        write_json_atomic(directory / STATE_FILE, asdict(self))

    def confirm(self, layer: dict[str, Any], version: int) -> None:
        self.layer, self.version, self.confirmed_at_ms = layer, version, time.time_ns() // 1_000_000


def _without(layer: dict[str, Any], paths: set[str], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in layer.items():
        p = f"{prefix}{k}"
        if isinstance(v, dict):
            out[k] = _without(v, paths, p + ".")
        elif p not in paths:
            out[k] = v
    return out


def load_with_layer(path: str | Path, layer: dict[str, Any], allow: list[str]) -> AgentConfig:
    """The file with ``layer`` merged over it, validated as ``config check`` does; ConfigError lists every problem:
    paths the shadow may not set, and what validation says of the rest."""
    problems = layer_problems(layer, allow)
    if problems and problems[0].startswith("drivers: "):  # malformed drivers table: nothing to validate
        raise ConfigError("shadow", problems)
    refused = {p.split(":", 1)[0] for p in problems}
    try:
        cfg = load_config(path, _without(layer, refused))
    except ConfigError as exc:
        raise ConfigError("shadow", problems + exc.problems) from None
    if problems:
        raise ConfigError("shadow", problems)
    return cfg


def load_effective(path: str | Path | None) -> tuple[AgentConfig, list[Event]]:
    """The config to run: the file, and with ``[remote] shadow`` on the confirmed layer over it. Raises
    ConfigError only for the file itself; a layer that no longer fits is dropped with an event."""
    cfg = load_config(path)
    if path is None or not cfg.remote.shadow:
        return cfg, []
    state = ShadowState.load(state_dir(cfg))
    if not state.layer:
        return cfg, []
    try:
        merged = load_with_layer(path, state.layer, cfg.remote.allow)
    except ConfigError as exc:
        msg = f"the confirmed shadow layer (version {state.version}) no longer fits {path}: running the file alone"
        log.error("remote: %s: %s", msg, "; ".join(exc.problems))
        return cfg, [
            Event(
                "remote.layer_dropped",
                f"{msg}: " + "; ".join(exc.problems)[:1500],
                source="remote",
                data={"version": state.version, "problems": exc.problems[:20]},
            )
        ]
    log.info("remote: running %s with the confirmed shadow layer version %d", path, state.version)
    return merged, []


def loader(path: str | Path) -> AgentConfig:
    """For SIGHUP: the file with the confirmed layer (what ``reload_from_file`` re-reads)."""
    return load_effective(path)[0]


# ---------------------------------------------------------------------------------------------- provenance
def _driver_names(drivers: list[Any]) -> list[str]:
    seen: list[str] = []
    for d in drivers:
        name = str(
            d.get("name") or (d.get("type") if d.get("type") not in seen else f"{d.get('type')}-{len(seen) + 1}")
        )
        seen.append(name)
    return seen


def _by_name(doc: dict[str, Any]) -> dict[str, Any]:
    """A config document with drivers keyed by name, as layers write them."""
    drivers = doc.get("drivers")
    if not isinstance(drivers, list):
        return doc
    return {**doc, "drivers": dict(zip(_driver_names(drivers), drivers))}


def _value_at(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc[part]
    return doc


def provenance(path: str | Path | None) -> tuple[AgentConfig, list[tuple[str, Any, str]]]:
    """The effective config and, for every value in it, (dotted key, value, where it came from): ``shadow vN``,
    ``file`` or ``default``. Secrets are shown as ``**********``."""
    cfg, _ = load_effective(path)
    file_data: dict[str, Any] = {}
    if path is not None:
        file_data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    state = ShadowState.load(state_dir(cfg)) if path is not None and cfg.remote.shadow else ShadowState()
    from_shadow = set(leaf_paths(state.layer)) if cfg.remote.shadow else set()
    from_file = set(leaf_paths(_by_name(file_data)))
    effective = _by_name(cfg.model_dump(mode="json", by_alias=True, serialize_as_any=True))
    rows = []
    for key in leaf_paths(effective):
        source = f"shadow v{state.version}" if key in from_shadow else "file" if key in from_file else "default"
        rows.append((key, _value_at(effective, key), source))
    return cfg, rows
