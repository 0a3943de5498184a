"""SIGHUP: re-read the config and apply what can change without a restart.

Only drivers are restarted, and only those whose section changed (added and removed ones too); the store, the
uplink and its MQTT session are never torn down by a reload, so ``seq`` keeps growing without a gap and the broker
sees one connection. Logging, plausibility ranges and supervisor settings apply in place. Any other change (``rig``,
``[store]``, ``[uplink]``, sections this module does not know) is reported as needing a restart and the running
value is kept. A file that fails validation is reported, problem by problem, and the running config stays.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import AgentConfig, ConfigError, load_config
from agent.logs import setup_logging
from agent.supervise import DriverRunner
from agent.validate import Validator
from drivers.base import DriverConfig, DriverContext, Event

if TYPE_CHECKING:
    from agent.pipeline import Agent

log = logging.getLogger("agent.reload")

RELOADABLE = {"drivers", "validate_", "log", "supervisor"}  # AgentConfig fields applied without a restart


@dataclass
class ReloadPlan:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)  # config keys that differ but only apply at start

    def summary(self) -> str:
        parts = [
            f"{k}={','.join(v)}"
            for k, v in (
                ("added", self.added),
                ("removed", self.removed),
                ("restarted", self.changed),
                ("kept", self.kept),
            )
            if v
        ]
        if self.needs_restart:
            parts.append(f"needs_restart={','.join(self.needs_restart)}")
        return " ".join(parts) or "no changes"


def _enabled(cfg: AgentConfig) -> dict[str, DriverConfig]:
    return {d.name: d for d in cfg.drivers if d.enabled}


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json") if hasattr(model, "model_dump") else model


def plan_reload(old: AgentConfig, new: AgentConfig) -> ReloadPlan:
    """What a reload from ``old`` to ``new`` does; pure, so it is easy to test and to log."""
    plan = ReloadPlan()
    before, after = _enabled(old), _enabled(new)
    for name, dcfg in after.items():
        if name not in before:
            plan.added.append(name)
        elif _dump(dcfg) != _dump(before[name]):
            plan.changed.append(name)
        else:
            plan.kept.append(name)
    plan.removed = [n for n in before if n not in after]
    for key in type(new).model_fields:
        if key not in RELOADABLE and _dump(getattr(old, key)) != _dump(getattr(new, key)):
            plan.needs_restart.append("validate" if key == "validate_" else key)
    return plan


def effective_config(old: AgentConfig, new: AgentConfig) -> AgentConfig:
    """``new`` with every field that cannot change at run time kept at its running value."""
    keep = {k: getattr(old, k) for k in type(new).model_fields if k not in RELOADABLE}
    return new.model_copy(update=keep)


async def apply_reload(agent: Agent, new: AgentConfig) -> ReloadPlan:
    """Restart changed drivers, start added ones, stop removed ones; keep the store and uplink running.

    Raises ValueError (nothing applied) if the new driver set would report one cell id from two drivers.
    """
    plan = plan_reload(agent.cfg, new)
    cfg = effective_config(agent.cfg, new)
    ctx = DriverContext(emit=agent.emit)
    fresh: dict[str, DriverRunner] = {}
    owners: dict[str, str] = {}
    for name, dcfg in _enabled(cfg).items():  # check the whole new set before touching anything
        runner = (
            agent.runners[name]
            if name in plan.kept
            else DriverRunner(dcfg, ctx, cfg.supervisor, agent.ingest, agent.emit)
        )
        cells = runner.driver.cells if name in plan.kept and runner.driver else runner.make_driver().cells
        for cell in cells:
            if cell in owners:
                raise ValueError(f"cell id {cell!r} would be reported by drivers {owners[cell]!r} and {name!r}")
            owners[cell] = name
        if name not in plan.kept:
            fresh[name] = runner
    stopping = [agent.runners[n] for n in plan.removed + plan.changed]
    for runner in stopping:
        if runner.task is not None:
            runner.task.cancel()
    await asyncio.gather(*(r.task for r in stopping if r.task is not None), return_exceptions=True)
    for name in plan.removed + plan.changed:
        del agent.runners[name]
        agent.validators.pop(name, None)
    agent.cfg = cfg
    setup_logging(cfg.log.level, cfg.log.format)
    for name, runner in agent.runners.items():  # kept drivers: new ranges and backoff settings, same state
        runner.sup = cfg.supervisor
        agent.validators[name].cfg = cfg.validate_
    for name, runner in fresh.items():
        agent.validators[name] = Validator(cfg.validate_, name)
        agent.runners[name] = runner
        runner.task = asyncio.create_task(runner.run(), name=f"driver:{name}")
    return plan


async def reload_from_file(agent: Agent, path: str | Path | None, notifier: Any = None) -> ReloadPlan | None:
    """Load ``path`` and apply it; on any problem log it, raise an event and keep the running config."""
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
        plan = await _load_and_apply(agent, path)
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
                "needs_restart": plan.needs_restart,
            },
        )
    )
    return plan


async def _load_and_apply(agent: Agent, path: str | Path) -> ReloadPlan | None:
    try:
        new = await asyncio.to_thread(load_config, path)
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
        return await apply_reload(agent, new)
    except ValueError as exc:
        log.error("reload rejected: %s; the running config stays in force", exc)
        agent.emit(Event("agent.reload_rejected", f"config reload rejected: {exc}", level="warning"))
        return None


async def reload_on_signal(
    agent: Agent, path: str | Path | None, requested: asyncio.Event, notifier: Any = None
) -> None:
    """Task: one reload per SIGHUP (signals arriving during a reload are folded into one more)."""
    while True:
        await requested.wait()
        requested.clear()
        log.info("SIGHUP: reloading %s", path or "(embedded default)")
        try:
            await reload_from_file(agent, path, notifier)
        except Exception:
            log.exception("reload failed; the running config stays in force")
