"""``RemoteService``: the shadow and jobs parts, run as one of the agent's services on the uplink's connection.

After every new connection (sessions are clean) it subscribes to the shadow's and the jobs' topics, then wakes both:
the shadow is read again and pending jobs are asked for, so nothing sent while the rig was offline is missed. Each
part runs as its own task, restarted with backoff if it fails; none of them can stop a driver or the uplink.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.control import AgentControl
from agent.remote.channel import Channel, RequestFailed
from agent.remote.jobs import JobRunner
from agent.remote.layer import state_dir
from agent.remote.models import ModelStore
from agent.remote.shadow import ShadowSync
from agent.remote.update import ModelUpdater
from agent.tasks import supervised
from agent.uplink.link import SubscribingLink
from drivers.backoff import Backoff
from drivers.base import Event

log = logging.getLogger("agent.remote")


class RemoteService:
    def __init__(self, cfg: AgentConfig, config_path: str | Path | None, link: SubscribingLink | None = None):
        """``link``: tests hand in a fake; the agent's own connection is used otherwise."""
        self.cfg = cfg.remote
        self.config_path = Path(config_path) if config_path is not None else None
        self.state_dir = state_dir(cfg)
        self.models = ModelStore(self.state_dir)
        self._link = link
        self.shadow: ShadowSync | None = None
        self.jobs: JobRunner | None = None
        self.control: AgentControl | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.subscribed_at: float | None = None

    async def start(self, agent: AgentControl) -> None:
        self.control = agent
        link = self._link or agent.mqtt()
        problem = None
        if link is None:
            problem = "[remote] is on, but the uplink is off (no uplink.endpoint): no shadow, no jobs"
        elif self.cfg.shadow and self.config_path is None:
            problem = "[remote] shadow needs a config file to layer over (run with --config FILE)"
        if problem is not None or link is None:
            log.error("remote: %s", problem)
            agent.emit(Event("remote.unavailable", str(problem), source="remote"))
            return
        removed = await asyncio.to_thread(self.models.recover)
        if removed:
            log.warning("remote: removed what an interrupted model update left: %s", ", ".join(removed))
        channel = Channel(link)
        filters: list[str] = []
        if self.cfg.shadow and self.config_path is not None:
            self.shadow = ShadowSync(agent, channel, self.config_path, self.state_dir)
            filters += self.shadow.filters()
            self._spawn("remote.shadow", self.shadow.run)
        if self.cfg.jobs:
            self.jobs = JobRunner(agent, channel, self.cfg, ModelUpdater(agent, self.cfg, self.models))
            filters += self.jobs.filters()
            self._spawn("remote.jobs", self.jobs.run)
        self._spawn("remote.connection", lambda: self._connections(link, channel, filters))
        log.info(
            "remote: shadow %s, jobs %s, %d signing key(s) pinned, state in %s",
            f"'{self.cfg.shadow_name}' (allow {', '.join(self.cfg.allow)})" if self.shadow else "off",
            "on" if self.jobs else "off",
            len(self.cfg.signing_keys),
            self.state_dir,
        )

    async def _connections(self, link: SubscribingLink, channel: Channel, filters: list[str]) -> None:
        backoff = Backoff(initial_s=1.0, max_s=60.0)
        while True:
            await link.connected.wait()
            generation = link.connects
            try:
                await channel.subscribe(filters)
            except RequestFailed as exc:
                delay = backoff.next_delay()
                log.error("remote: %s; trying again in %.0f s", exc, delay)
                if self.control is not None and backoff.attempts == 1:
                    self.control.emit(Event("remote.subscribe_failed", str(exc)[:1000], source="remote"))
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            self.subscribed_at = time.monotonic()
            for part in (self.shadow, self.jobs):
                if part is not None:
                    part.wake.set()
            while link.connected.is_set() and link.connects == generation:
                await asyncio.sleep(0.2)

    def _spawn(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        self.tasks.append(asyncio.create_task(self._guard(name, fn), name=name))

    async def _guard(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        emit = self.control.emit if self.control is not None else None
        await supervised(name, fn, emit, log, kind="remote.task_fault", source="remote", level="warning")

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()

    def health_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"models": self.control.model_versions() if self.control is not None else {}}
        if self.shadow is not None:
            out.update(self.shadow.status())
        if self.jobs is not None:
            out.update(self.jobs.status())
        return {"remote": out}
