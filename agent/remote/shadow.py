"""Config through a named device shadow (``$aws/things/{rig}/shadow/name/{name}/...``).

On every new connection, and on every ``/update/delta``, the agent GETs the whole shadow (a delta leaves out keys
the operator deleted) and acts if the desired state differs from the last one it processed:

1. every path must be one the shadow may set (``[remote] allow``, never identity/endpoint/certificates/store);
2. the file with the desired layer merged over it is validated as ``config check`` does;
3. a change that applies only at start is refused (the shadow changes what applies at run time);
4. it is applied through the reload path (``AgentControl.reload``: only changed drivers restart);
5. it is kept only if the pipeline stays healthy for ``confirm_s`` (no internal task stops, no driver it touched
   fails, every driver it touched runs); otherwise the previous config is applied again;
6. a kept layer is written to the state directory (atomically) and runs after a restart.

The outcome goes to ``reported`` (the confirmed layer itself, so the delta empties when all is applied, and
``status``: outcome, version, every problem) and to an event.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, ConfigError
from agent.control import AgentControl
from agent.reload import ReloadPlan, plan_reload
from agent.remote.channel import Channel, RequestFailed
from agent.remote.layer import ShadowState, load_with_layer
from drivers.base import Event

log = logging.getLogger("agent.remote")

MAX_PROBLEMS = 8  # in reported (a shadow document is at most 8 KB); the event carries up to 20


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _digest(desired: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(desired, sort_keys=True).encode()).hexdigest()


def _removals(before: Any, after: Any) -> Any:
    """``after`` plus a null for every key of ``before`` it no longer has (a shadow update deletes with null)."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return after
    out = {k: _removals(before.get(k), v) for k, v in after.items()}
    out.update({k: None for k in before if k not in after})
    return out


async def watch(control: AgentControl, plan: ReloadPlan, confirm_s: float, poll_s: float = 0.1) -> str | None:
    """None if the pipeline stays healthy for ``confirm_s`` after ``plan`` was applied; else why not."""
    if confirm_s <= 0:
        return None
    touched = set(plan.added + plan.changed)
    before = {d["name"]: d for d in control.drivers_status()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + confirm_s
    while True:
        dead = control.dead_tasks()
        if dead:
            return f"internal task(s) stopped: {', '.join(dead)}"
        now = {d["name"]: d for d in control.drivers_status()}
        for name, d in now.items():
            was = before.get(name, {})
            failed = d["state"] == "backoff" or d["restarts"] > was.get("restarts", 0)
            if failed and (name in touched or was.get("state") == "running"):
                return f"driver {name} failed: {d.get('last_error') or d['state']}"
        left = deadline - loop.time()
        if left <= 0:
            break
        await asyncio.sleep(min(poll_s, left))
    idle = sorted(n for n in touched if now.get(n, {}).get("state") != "running")
    if idle:
        return f"driver(s) {', '.join(idle)} not running {confirm_s:g} s after the change"
    return None


class ShadowSync:
    def __init__(self, control: AgentControl, channel: Channel, config_path: Path, state_dir: Path):
        self.control = control
        self.channel = channel
        self.config_path = config_path
        self.state_dir = state_dir
        self.cfg = control.cfg.remote
        self.prefix = f"$aws/things/{control.cfg.rig}/shadow/name/{self.cfg.shadow_name}"
        self.state = ShadowState.load(state_dir)
        self.wake = asyncio.Event()
        self._reported_ok = False
        channel.route(f"{self.prefix}/update/delta", lambda doc: self.wake.set())

    def filters(self) -> list[str]:
        p = self.prefix
        return [
            f"{p}/update/delta",
            f"{p}/get/accepted",
            f"{p}/get/rejected",
            f"{p}/update/accepted",
            f"{p}/update/rejected",
        ]

    async def run(self) -> None:
        """Task: one sync per wake-up (a delta or a new connection)."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            try:
                await self.sync()
            except RequestFailed as exc:
                log.warning("remote: shadow: %s (tried again at the next delta or connection)", exc)

    async def sync(self) -> None:
        try:
            doc = await self.channel.request(f"{self.prefix}/get", {})
        except RequestFailed as exc:
            if exc.doc.get("code") != 404:
                raise
            doc = {"state": {}, "version": 0}  # no shadow yet: nothing desired
        state = _obj(doc.get("state"))
        desired, reported = _obj(state.get("desired")), _obj(state.get("reported"))
        version = int(doc.get("version") or 0)
        if _digest(desired) == self.state.last.get("desired_sha256"):
            if not self._reported_ok:
                await self._report(reported)
            return
        await self._process(desired, version)
        await self._report(reported)

    async def _process(self, desired: dict[str, Any], version: int) -> None:
        running = self.control.cfg
        try:
            new = await asyncio.to_thread(load_with_layer, self.config_path, desired, self.cfg.allow)
            plan = plan_reload(running, new)
            if plan.needs_restart:
                raise ConfigError(
                    "shadow",
                    [
                        f"{k}: applies only when the agent starts; the shadow sets only what applies at run time"
                        for k in plan.needs_restart
                    ],
                )
            plan = await self.control.reload(new)
        except (ConfigError, ValueError) as exc:
            problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
            return self._outcome("rejected", desired, version, problems=problems)
        changed = plan.added or plan.changed or plan.removed or plan.sections
        why = await watch(self.control, plan, self.cfg.confirm_s) if changed else None
        if why is not None:
            await self._restore(running)
            return self._outcome("rolled_back", desired, version, reason=why)
        self.state.confirm(desired, version)
        self._outcome("applied", desired, version, summary=plan.summary())

    async def _restore(self, previous: AgentConfig) -> None:
        try:
            await self.control.reload(previous)
        except ValueError:  # cannot happen for a config that ran, but never leave the loop on it
            log.exception("remote: could not restore the previous config")

    def _outcome(self, outcome: str, desired: dict[str, Any], version: int, **info: Any) -> None:
        problems: list[str] = info.get("problems", [])
        self.state.last = {
            "outcome": outcome,
            "desired_version": version,
            "desired_sha256": _digest(desired),
            "config_version": self.state.version,
            "problems": [p[:200] for p in problems[:MAX_PROBLEMS]],
            "reason": str(info.get("reason", ""))[:500],
            "ts": time.time_ns() // 1_000_000,
        }
        try:
            self.state.save(self.state_dir)
        except OSError as exc:  # the change runs; it would not survive a restart
            log.error("remote: cannot write the shadow state in %s: %s", self.state_dir, exc)
        self._reported_ok = False
        detail = "; ".join(problems) or info.get("reason") or info.get("summary", "")
        level = "info" if outcome == "applied" else "warning"
        log.log(
            logging.INFO if outcome == "applied" else logging.WARNING,
            "remote: shadow v%d %s: %s",
            version,
            outcome,
            detail,
        )
        self.control.emit(
            Event(
                f"remote.config_{outcome}",
                f"shadow config version {version} {outcome.replace('_', ' ')}: {detail}"[:1900],
                level=level,
                source="remote",
                data={"version": version, "config_version": self.state.version, "problems": problems[:20]},
            )
        )

    async def _report(self, reported_before: dict[str, Any]) -> None:
        status = {k: v for k, v in self.state.last.items() if k != "desired_sha256"}
        before = {k: v for k, v in reported_before.items() if k != "status"}
        body = {"state": {"reported": {**_removals(before, self.state.layer), "status": status}}}
        await self.channel.request(f"{self.prefix}/update", body)
        self._reported_ok = True

    def status(self) -> dict[str, Any]:
        return {"config_version": self.state.version, "config_status": self.state.last.get("outcome", "none")}
