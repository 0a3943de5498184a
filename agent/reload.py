"""SIGHUP: re-read the config and apply what can change without a restart.

Only drivers are restarted, and only those whose section changed (added and removed ones too); the store, the
uplink and its MQTT session are never torn down by a reload, so ``seq`` keeps growing without a gap and the broker
sees one connection. Logging, plausibility ranges and supervisor settings apply in place; a changed
``[dashboard]`` section (a new token included) restarts the dashboard, so an old token stops working at once; a
changed ``[twin]`` rebuilds the twin from the store, as at a start (``Agent.rebuild_processors``); in ``[uplink]``
``linger_ms`` applies in place. Any other change (``rig``, ``[store]``, the rest of ``[uplink]``, ``[remote]``,
sections this module does not know) is reported as needing a restart and the running value is kept. A file that
fails validation is reported, problem by problem, and the running config stays. The same path applies a change from
the device shadow (``agent/remote/shadow.py``).

Sections are compared by value, secrets included: ``model_dump(mode="json")`` prints every ``SecretStr`` as
``**********``, so a changed token used to compare equal and the old one stayed valid (issue 14.2).

The plan is pure (``plan_reload``); applying it is the agent's own business (``AgentControl.reload``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, SecretBytes, SecretStr

from agent.config import AgentConfig, ConfigError, load_config
from agent.control import AgentControl
from drivers.base import DriverConfig, Event

log = logging.getLogger("agent.reload")


class ReloadNotifier(Protocol):
    """Told when a reload begins and ends (the systemd notifier: RELOADING=1, then READY=1)."""

    def reloading(self) -> None: ...

    def reloaded(self, summary: str) -> None: ...


# AgentConfig fields applied without a restart ("dashboard" by restarting the dashboard service, "twin" by rebuilding
# it); LIVE_KEYS: keys applied in place inside sections that otherwise need a restart.
RELOADABLE = {"drivers", "validate_", "log", "supervisor", "dashboard", "twin"}
LIVE_KEYS = {"uplink": {"linger_ms"}}
Loader = Callable[[str | Path], AgentConfig]


@dataclass
class ReloadPlan:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)  # reloadable sections other than drivers that changed
    needs_restart: list[str] = field(default_factory=list)  # config keys that differ but only apply at start

    def summary(self) -> str:
        parts = [
            f"{k}={','.join(v)}"
            for k, v in (
                ("added", self.added),
                ("removed", self.removed),
                ("restarted", self.changed),
                ("kept", self.kept),
                ("applied", self.sections),
            )
            if v
        ]
        if self.needs_restart:
            parts.append(f"needs_restart={','.join(self.needs_restart)}")
        return " ".join(parts) or "no changes"


def _enabled(cfg: AgentConfig) -> dict[str, DriverConfig]:
    return {d.name or d.type: d for d in cfg.drivers if d.enabled}


def comparable(value: Any) -> Any:
    """A config value as plain data with every secret by its value (a new token must compare different)."""
    if isinstance(value, BaseModel):
        return {k: comparable(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, (SecretStr, SecretBytes)):
        return ("secret", value.get_secret_value())
    if isinstance(value, (list, tuple)):
        return [comparable(v) for v in value]
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    return value


def plan_reload(old: AgentConfig, new: AgentConfig) -> ReloadPlan:
    """What a reload from ``old`` to ``new`` does; pure, so it is easy to test and to log."""
    plan = ReloadPlan()
    before, after = _enabled(old), _enabled(new)
    for name, dcfg in after.items():
        if name not in before:
            plan.added.append(name)
        elif comparable(dcfg) != comparable(before[name]):
            plan.changed.append(name)
        else:
            plan.kept.append(name)
    plan.removed = [n for n in before if n not in after]
    for key in type(new).model_fields:
        if key == "drivers" or comparable(getattr(old, key)) == comparable(getattr(new, key)):
            continue
        name = "validate" if key == "validate_" else key
        (plan.sections if key in RELOADABLE or _only_live(old, new, key) else plan.needs_restart).append(name)
    return plan


def _only_live(old: AgentConfig, new: AgentConfig, key: str) -> bool:
    a, b = comparable(getattr(old, key)), comparable(getattr(new, key))
    return key in LIVE_KEYS and {k for k in a if a[k] != b[k]} <= LIVE_KEYS[key]


def effective_config(old: AgentConfig, new: AgentConfig) -> AgentConfig:
    """``new`` with every field that cannot change at run time kept at its running value."""
    keep = {k: getattr(old, k) for k in type(new).model_fields if k not in RELOADABLE}
    for key, live in LIVE_KEYS.items():
        if _only_live(old, new, key):
            keep[key] = getattr(old, key).model_copy(update={k: getattr(getattr(new, key), k) for k in live})
    return new.model_copy(update=keep)


async def reload_from_file(
    agent: AgentControl, path: str | Path | None, notifier: ReloadNotifier | None = None, loader: Loader = load_config
) -> ReloadPlan | None:
    """Load ``path`` (with ``loader``: the remote parts add the confirmed shadow layer) and apply it; on any problem
    log it, raise an event and keep the running config."""
    if path is None:
        log.warning(
            "reload requested, but the agent runs on the embedded default config: nothing to re-read "
            "(start it with --config FILE)"
        )
        return None
    if notifier is not None:
        notifier.reloading()
    plan: ReloadPlan | None = None
    try:
        plan = await _load_and_apply(agent, path, loader)
    finally:
        if notifier is not None:
            notifier.reloaded(plan.summary() if plan is not None else "rejected, running config kept")
    if plan is None:
        return None
    log.info("config reloaded %s", plan.summary())
    if plan.needs_restart:
        log.warning(
            "config reload: [%s] changed, but only takes effect at start: the running values stay until the "
            "agent restarts (systemctl restart battery-twin)",
            "], [".join(plan.needs_restart),
        )
    agent.emit(
        Event(
            "agent.config_reloaded",
            f"config reloaded: {plan.summary()}",
            level="info",
            data={
                "added": plan.added,
                "removed": plan.removed,
                "restarted": plan.changed,
                "applied": plan.sections,
                "needs_restart": plan.needs_restart,
            },
        )
    )
    return plan


async def _load_and_apply(agent: AgentControl, path: str | Path, loader: Loader) -> ReloadPlan | None:
    try:
        new = await asyncio.to_thread(loader, path)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("reload rejected: %s: %s", exc.source, problem)
        log.error(
            "reload rejected: %d problem(s) in %s; the running config stays in force", len(exc.problems), exc.source
        )
        agent.emit(
            Event(
                "agent.reload_rejected",
                f"config reload rejected, {len(exc.problems)} problem(s): " + "; ".join(exc.problems)[:800],
                level="warning",
                data={"problems": exc.problems[:20]},
            )
        )
        return None
    try:
        return await agent.reload(new)
    except ValueError as exc:
        log.error("reload rejected: %s; the running config stays in force", exc)
        agent.emit(Event("agent.reload_rejected", f"config reload rejected: {exc}", level="warning"))
        return None


async def reload_on_signal(
    agent: AgentControl,
    path: str | Path | None,
    requested: asyncio.Event,
    notifier: ReloadNotifier | None = None,
    loader: Loader = load_config,
) -> None:
    """Task: one reload per SIGHUP (signals arriving during a reload are folded into one more)."""
    while True:
        await requested.wait()
        requested.clear()
        log.info("SIGHUP: reloading %s", path or "(embedded default)")
        try:
            await reload_from_file(agent, path, notifier, loader)
        except Exception:
            log.exception("reload failed; the running config stays in force")
