"""The agent: drivers -> validate -> processors (the twin) -> store -> uplink, every stage supervised.

Field-side polling never depends on the cloud: drivers write into the store whatever the link does, and the
uplink drains the store when it can. The only buffers are bounded: one pending batch per driver (each driver
task awaits its own store write) and a bounded list of events waiting for the next store transaction.

``Agent`` implements ``AgentControl`` (control.py), the one surface its services and the reload task use.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from agent import __version__
from agent.config import AgentConfig
from agent.control import HealthPart, UsesModels
from agent.health import RateMeter, build_health
from agent.healthcadence import HealthCadence
from agent.logs import setup_logging
from agent.pending import Pending
from agent.processing import Cycles, Processor, ProcessorStage
from agent.reload import ReloadPlan, effective_config, plan_reload
from agent.services import SectionService, Service
from agent.store import OpenPolicy, Store, StoreFull
from agent.store.db import is_corruption
from agent.store.stats import StoreStats
from agent.store.worker import StoreClosed, StoreWorker
from agent.supervise import CellClash, DriverRunner, Drivers
from agent.tasks import supervised
from agent.uplink.mqtt import MqttLink
from agent.uplink.uplink import Uplink
from drivers.backoff import Backoff
from drivers.base import Event, ReadingBatch

log = logging.getLogger("agent")

ProcessorFactory = Callable[[AgentConfig], list[Processor]]


class StartupError(Exception):
    """A configuration problem found at start (e.g. two drivers reporting the same cell id)."""


class Agent:
    def __init__(
        self,
        cfg: AgentConfig,
        processors: list[Processor] | None = None,
        services: list[Service] | None = None,
        store_open: OpenPolicy | None = None,
        processor_factory: ProcessorFactory | None = None,
    ):
        """``processor_factory`` builds the processors for a config; with it they are rebuilt when ``[twin]``
        changes or a model is updated (without it, ``processors`` are fixed)."""
        self.cfg = cfg
        self.processor_factory = processor_factory
        self.processors: list[Processor] = list(processors or [])
        self.services: list[Service] = list(services or [])
        st = cfg.store
        opener = functools.partial(
            Store.open,
            st.path,
            synchronous=st.synchronous,
            max_bytes=st.max_bytes,
            keep_sent_s=st.keep_sent_s,
            min_free_bytes=st.min_free_bytes,
            policy=store_open or OpenPolicy(),
        )
        self.worker = StoreWorker(opener)
        self.drivers = Drivers(self.ingest, self.emit, self.stored_cells)
        self.link: MqttLink | None = None
        self.uplink: Uplink | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.started_monotonic = time.monotonic()
        self.ready = asyncio.Event()
        self.pending = Pending()
        self.last_health: dict[str, Any] = {}
        self._meter = RateMeter()
        self.lost_batches = 0
        self.stage = ProcessorStage()  # the processors (the twin) run in its thread, batches in arrival order
        self._reload_lock = asyncio.Lock()

    @property
    def runners(self) -> dict[str, DriverRunner]:
        return self.drivers.runners

    def stored_cells(self) -> set[str]:
        """Cells a processor (the twin) already knows from the store or this run: no simulated past for them."""
        out: set[str] = set()
        for proc in self.processors:
            known = getattr(proc, "known_cells", None)
            if known is not None:
                out |= set(known())
        return out

    def emit(self, event: Event) -> None:
        """Event sink for drivers and stages: bounded; written with the next store transaction."""
        self.pending.emit(event)

    # ---------------------------------------------------------------- ingest (one call per driver batch)
    async def ingest(self, runner: DriverRunner, batch: ReadingBatch) -> None:
        await self.stage.shielded(self._ingest(runner, batch))  # a stopped driver's batch is still stored

    async def _ingest(self, runner: DriverRunner, batch: ReadingBatch) -> None:
        events = runner.validator.check(batch)
        ev, cycles = await self.stage.run(self.processors, batch, runner.name)
        events.extend(ev)
        more_events, more_cycles = self.pending.take()
        await self._store_batch(batch, runner.name, events + more_events, more_cycles + cycles)
        if self.uplink is not None:
            self.uplink.wake.set()

    async def _store_batch(self, batch: ReadingBatch, source: str, events: list[Event], cycles: Cycles) -> None:
        """One transaction: readings, events, cycles. Corruption is quarantined, other errors retried with
        backoff; a batch that cannot be stored is counted and reported, its events and cycles kept."""
        backoff = Backoff(initial_s=0.5, max_s=5.0)
        why = "could not be stored after retries"
        for attempt in range(6):
            try:
                await self.worker.call(Store.append, batch, source, events, cycles)
                return
            except StoreFull as exc:
                log.error("store full: batch of %d readings from %s not stored: %s", len(batch), source, exc)
                why = "could not be stored: disk full"
                break
            except sqlite3.DatabaseError as exc:
                if is_corruption(exc):
                    log.error("store corrupt at run time: %s; quarantining", exc)
                    await self.worker.call(Store.reopen_fresh, str(exc))
                else:
                    log.warning("store write failed (attempt %d): %s", attempt + 1, exc)
                    await asyncio.sleep(backoff.next_delay())
        self.lost_batches += 1
        self.pending.keep(events, cycles)  # never drop events or cycles: they go with the next transaction
        msg = f"{len(batch)} readings from {source} {why}"
        self.emit(Event("store.batch_lost", msg, level="critical", source="store", data={"count": len(batch)}))

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Open the store (``StoreUnavailable`` if it cannot be used), start drivers, uplink, tasks, services."""
        cfg = self.cfg
        for e in await self.worker.open():
            log.error("%s", e.message)
        try:
            runners = self.drivers.plan(cfg)
        except CellClash as exc:
            raise StartupError(str(exc)) from None
        if not runners:
            log.warning("no drivers enabled: the agent will only drain its store")
        if cfg.uplink.enabled:
            self.link = MqttLink(cfg.uplink, cfg.rig, asyncio.get_running_loop())
            self.link.start()  # raises TlsFilesError before any connection attempt
            self.uplink = Uplink(cfg.uplink, cfg.rig, self.worker, self.link, emit=self.emit)
            self._spawn("uplink", self.uplink.run)
        else:
            log.warning(
                "uplink off: no uplink.endpoint configured; readings accumulate in %s and drain once an "
                "endpoint is set",
                cfg.store.path,
            )
        self.drivers.start(runners)
        self._spawn("events", self._events_loop)
        self._spawn("maintenance", self._maintenance_loop)
        self._spawn("health", self._health_loop)
        for svc in self.services:
            await svc.start(self)
        self.ready.set()
        log.info(
            "agent started rig=%s drivers=%s store=%s version=%s",
            cfg.rig,
            ",".join(self.runners) or "-",
            cfg.store.path,
            __version__,
        )

    def _spawn(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        self.tasks.append(asyncio.create_task(self._guard(name, fn), name=name))

    async def _guard(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        """Supervise an internal task: log, back off, restart; never let it die silently."""
        await supervised(name, fn, self.emit, log)

    async def _store_pending(self) -> None:
        events, cycles = self.pending.take()
        try:
            await self.worker.call(Store.append, None, "", events, cycles)
        except BaseException:
            self.pending.keep(events, cycles)
            raise

    async def _events_loop(self) -> None:
        """Events raised while no batches flow (a driver is down) still reach the store within a second."""
        while True:
            await asyncio.sleep(1.0)
            if self.pending:
                await self._store_pending()
                if self.uplink is not None:
                    self.uplink.wake.set()

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.store.maintenance_interval_s)
            for e in await self.worker.call(Store.maintain):
                log.warning("%s", e.message)

    # ---------------------------------------------------------------- health (AgentControl)
    def health(self, store: StoreStats, meter: RateMeter) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for svc in self.services:
            part = getattr(svc, "inner", svc)  # a SectionService wraps its service
            if isinstance(part, HealthPart):
                extra.update(part.health_fields())
        return build_health(
            rig=self.cfg.rig,
            uptime_s=time.monotonic() - self.started_monotonic,
            store=store,
            uplink=self.uplink.health() if self.uplink is not None else None,
            uplink_state=self.link.state if self.link is not None else "off",
            drivers=self.drivers.status(),
            meter=meter,
            now=time.monotonic(),
            extra=extra,
        )

    async def health_now(self) -> dict[str, Any]:
        """The health message as published: store figures from the store thread, the agent's own rate window."""
        return self.health(await self.worker.call(Store.stats), self._meter)

    async def _health_loop(self) -> None:
        cadence = HealthCadence.from_config(self.cfg.uplink)  # on change plus a heartbeat (agent/healthcadence.py)
        while True:
            await asyncio.sleep(cadence.sleep_s(time.monotonic()))
            h = await self.health_now()
            self.last_health = h
            log.info(
                "health depth=%d oldest_unsent_s=%.1f store_bytes=%d dropped=%d uplink=%s acked_rate=%.1f/s "
                "errors=%d rejected=%d drivers=%s",
                h["store_depth_readings"],
                h["oldest_unsent_age_s"],
                h["store_bytes"],
                h["dropped_readings"],
                h["uplink_state"],
                h["readings_rate_s"],
                h["publish_errors"],
                h["publish_rejected"],
                ",".join(f"{d['name']}:{d['state']}" for d in h["drivers"]),
            )
            if self.uplink is not None:
                now = time.monotonic()
                msg = cadence.observe(h, now, self.uplink.stats.acked_msgs)
                if msg is not None and self.uplink.publish_health(orjson.dumps(msg)):
                    cadence.published(now)

    def status_line(self) -> str:
        drivers = ",".join(f"{d['name']}:{d['state']}" for d in self.drivers.status()) or "-"
        uplink = self.link.state if self.link is not None else "off"
        depth = self.last_health.get("store_depth_readings")
        unsent = f"; unsent readings {depth}" if depth is not None else ""
        return f"rig {self.cfg.rig}; drivers {drivers}; uplink {uplink}{unsent}"

    # ---------------------------------------------------------------- readiness (AgentControl)
    async def wait_ready(self) -> None:
        await self.ready.wait()

    def drivers_starting(self) -> list[str]:
        return self.drivers.starting()

    def dead_tasks(self) -> list[str]:
        return [t.get_name() for t in self.tasks if t.done()]

    def healthy(self) -> bool:
        """For the service watchdog: every internal task alive."""
        return not self.dead_tasks()

    def drivers_status(self) -> list[dict[str, Any]]:
        return self.drivers.status()

    def processor_faults(self) -> int:
        models = sum(p.model_failures() for p in self.processors if isinstance(p, UsesModels))
        return self.stage.faults + models

    async def store_answers(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self.worker.ping()
        except (TimeoutError, RuntimeError):
            return False
        return True

    # ---------------------------------------------------------------- configuration (AgentControl)
    async def reload(self, new: AgentConfig) -> ReloadPlan:
        """Restart changed drivers, start added ones, stop removed ones, restart changed services; the store and
        the uplink keep running. Raises ValueError (nothing applied) if one cell id would come from two drivers.
        One reload at a time (SIGHUP and the shadow may ask at once)."""
        async with self._reload_lock:
            return await self._reload(new)

    async def _reload(self, new: AgentConfig) -> ReloadPlan:
        plan = plan_reload(self.cfg, new)
        cfg = effective_config(self.cfg, new)
        runners = self.drivers.plan(cfg, keep=plan.kept)  # checks the whole new set before touching anything
        await self.drivers.stop(plan.removed + plan.changed)
        self.cfg = cfg
        setup_logging(cfg.log.level, cfg.log.format)
        for name in plan.kept:  # new ranges and backoff settings, same state
            self.drivers.runners[name].reconfigure(cfg)
        self.drivers.start({n: r for n, r in runners.items() if n not in plan.kept})
        if self.uplink is not None:
            self.uplink.cfg = cfg.uplink  # live keys (linger_ms); the rest is the running value
        if "twin" in plan.sections:
            await self.rebuild_processors()
        for svc in self.services:
            if isinstance(svc, SectionService):
                await svc.reconfigure(cfg)
        return plan

    def dashboard_token(self) -> str:
        return self.cfg.dashboard.token.get_secret_value()

    # ---------------------------------------------------------------- remote control (AgentControl)
    def mqtt(self) -> MqttLink | None:
        return self.link

    async def rebuild_processors(self) -> dict[str, str | None]:
        if self.processor_factory is not None:
            # Built off the loop (model loading, the twin's restore from the store); swapped between two batches.
            self.processors = await asyncio.to_thread(self.processor_factory, self.cfg)
        return self.model_versions()

    def model_versions(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for proc in self.processors:
            if isinstance(proc, UsesModels):
                out.update(proc.model_versions())
        return out

    # ---------------------------------------------------------------- stop
    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop drivers, commit what is in flight, publish what fits in ``drain_timeout_s``, close cleanly."""
        log.info("agent stopping")
        for svc in reversed(self.services):
            try:
                await svc.stop()
            except Exception:
                log.exception("service %s failed to stop", type(svc).__name__)
        await self.drivers.stop(list(self.runners), timeout_s=10.0)  # a driver's close is bounded at 5 s
        await self.stage.drain(10.0)  # batches of stopped drivers still on their way to the store
        log.info("stopping: drivers stopped")
        if self.pending:
            try:
                await self._store_pending()
            except (sqlite3.Error, StoreClosed) as exc:
                log.error("could not store pending events at shutdown: %s", exc)
        if self.uplink is not None:
            await self.uplink.publish_backlog(drain_timeout_s)
            log.info("stopping: store drained as far as the link allowed")
        for t in self.tasks:
            t.cancel()
        if self.tasks:  # bounded: a task that ignores its cancellation must not hang the shutdown
            _, stuck = await asyncio.wait(self.tasks, timeout=5.0)
            if stuck:
                log.error("stopping: tasks did not stop within 5 s: %s", ",".join(t.get_name() for t in stuck))
        log.info("stopping: tasks stopped")
        if self.uplink is not None:
            left = await self.uplink.settle(max(0.5, drain_timeout_s / 2))
            log.info("stopping: in-flight publishes settled (%d left)", left)
        if self.link is not None:
            await asyncio.to_thread(self.link.stop, 3.0)
        await self.worker.close()
        self.stage.close()
        log.info("agent stopped")
