"""The agent: drivers -> validate -> processors (the twin) -> store -> uplink, every stage supervised.

Field-side polling never depends on the cloud: drivers write into the store whatever the link does, and the
uplink drains the store when it can. The only buffers are bounded: one pending batch per driver (each driver
task awaits its own store write) and a bounded list of events waiting for the next store transaction.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
import time
from typing import Any, Protocol

from agent import __version__
from agent.config import AgentConfig
from agent.healthcadence import HealthCadence, health_topic
from agent.store import Store, StoreFull
from agent.store.worker import StoreWorker
from agent.supervise import DriverRunner
from agent.uplink.mqtt import MqttLink
from agent.uplink.uplink import Uplink
from agent.validate import Validator
from drivers.base import Driver, DriverContext, Event, ReadingBatch

log = logging.getLogger("agent")

MAX_PENDING_EVENTS = 10_000


class Processor(Protocol):
    """A stage between validation and the store (the twin): sees every batch, may raise events and cycles."""

    def process(self, batch: ReadingBatch, source: str) -> tuple[list[Event], list[dict[str, Any]]]: ...


class Service(Protocol):
    """Something that runs beside the pipeline for the agent's lifetime (the dashboard, the sd_notify watchdog).
    Started after the pipeline is up, stopped before it is torn down."""

    async def start(self, agent: Agent) -> None: ...

    async def stop(self) -> None: ...


class StartupError(Exception):
    """A configuration problem found at start (e.g. two drivers reporting the same cell id)."""


class Agent:
    def __init__(
        self, cfg: AgentConfig, processors: list[Processor] | None = None, services: list[Service] | None = None
    ):
        self.cfg = cfg
        self.processors: list[Processor] = list(processors or [])
        self.services: list[Service] = list(services or [])
        st = cfg.store
        self.store = Store(
            st.path,
            synchronous=st.synchronous,
            max_bytes=st.max_bytes,
            keep_sent_s=st.keep_sent_s,
            min_free_bytes=st.min_free_bytes,
        )
        self.worker = StoreWorker(self.store)
        self.runners: dict[str, DriverRunner] = {}
        self.validators: dict[str, Validator] = {}
        self.link: MqttLink | None = None
        self.uplink: Uplink | None = None
        self.tasks: list[asyncio.Task] = []
        self.started_monotonic = time.monotonic()
        self.ready = asyncio.Event()
        self._pending_events: collections.deque[Event] = collections.deque()
        self._events_overflow = 0
        self._last_health: dict[str, Any] = {}
        self._last_rates = (time.monotonic(), 0, 0)
        self.lost_batches = 0

    # ---------------------------------------------------------------- events
    def emit(self, event: Event) -> None:
        """Event sink for drivers and stages: bounded; written with the next store transaction."""
        if len(self._pending_events) >= MAX_PENDING_EVENTS:
            self._events_overflow += 1
            return
        self._pending_events.append(event)

    def _take_events(self) -> list[Event]:
        events = list(self._pending_events)
        self._pending_events.clear()
        if self._events_overflow:
            events.append(
                Event(
                    "agent.events_overflow",
                    f"{self._events_overflow} events were not recorded: "
                    f"more than {MAX_PENDING_EVENTS} waited for the store",
                    level="alarm",
                    data={"count": self._events_overflow},
                )
            )
            self._events_overflow = 0
        return events

    # ---------------------------------------------------------------- ingest (one call per driver batch)
    async def ingest(self, driver: Driver, batch: ReadingBatch) -> None:
        events = self.validators[driver.name].check(batch)
        cycles: list[dict[str, Any]] = []
        for proc in self.processors:
            try:
                ev, cy = proc.process(batch, driver.name)
                events.extend(ev)
                cycles.extend(cy)
            except Exception as exc:
                log.exception("processor %s failed", type(proc).__name__)
                events.append(
                    Event(
                        "agent.processor_fault",
                        f"{type(proc).__name__} failed: {exc!r}"[:500],
                        level="warning",
                        source="twin",
                    )
                )
        events.extend(self._take_events())
        await self._store_batch(batch, driver.name, events)
        if cycles:
            await self.worker.call(self.store.append_cycles, cycles)
        if self.uplink is not None:
            self.uplink.wake.set()

    async def _store_batch(self, batch: ReadingBatch, source: str, events: list[Event]) -> None:
        delay = 0.5
        for attempt in range(6):
            try:
                await self.worker.call(self.store.append, batch, source, events)
                return
            except StoreFull as exc:
                self.lost_batches += 1
                log.error("store full: batch of %d readings from %s not stored: %s", len(batch), source, exc)
                for e in events:  # never drop events: keep them for the next transaction
                    self.emit(e)
                self.emit(
                    Event(
                        "store.batch_lost",
                        f"disk full: {len(batch)} readings from {source} could not be stored",
                        level="critical",
                        source="store",
                        data={"count": len(batch)},
                    )
                )
                return
            except sqlite3.DatabaseError as exc:
                code = getattr(exc, "sqlite_errorcode", None)
                if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                    log.error("store corrupt at run time: %s; quarantining", exc)
                    await self.worker.call(self.store.reopen_fresh, str(exc))
                else:
                    log.warning("store write failed (attempt %d): %s", attempt + 1, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        self.lost_batches += 1
        for e in events:
            self.emit(e)
        self.emit(
            Event(
                "store.batch_lost",
                f"{len(batch)} readings from {source} could not be stored after retries",
                level="critical",
                source="store",
                data={"count": len(batch)},
            )
        )

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        cfg = self.cfg
        opened = await self.worker.call(self.store.open)
        for e in opened:
            log.error("%s", e.message)
        ctx = DriverContext(emit=self.emit)
        owners: dict[str, str] = {}
        for dcfg in cfg.drivers:
            if not dcfg.enabled:
                continue
            runner = DriverRunner(dcfg, ctx, cfg.supervisor, self.ingest, self.emit)
            for cell in runner.make_driver().cells:
                if cell in owners:
                    raise StartupError(
                        f"cell id {cell!r} is reported by drivers {owners[cell]!r} and "
                        f"{runner.name!r}; cell ids must be unique within the rig (set cell ids or "
                        "a cell_prefix in one of them)"
                    )
                owners[cell] = runner.name
            self.runners[runner.name] = runner
            self.validators[runner.name] = Validator(cfg.validate_, runner.name)
        if not self.runners:
            log.warning("no drivers enabled: the agent will only drain its store")
        if cfg.uplink.enabled:
            self.link = MqttLink(cfg.uplink, cfg.rig, asyncio.get_running_loop())
            self.link.start()  # raises TlsFilesError before any connection attempt
            self.uplink = Uplink(cfg.uplink, cfg.rig, self.worker, self.link)
            self.tasks.append(asyncio.create_task(self._guard("uplink", self.uplink.run), name="uplink"))
        else:
            log.warning(
                "uplink off: no uplink.endpoint configured; readings accumulate in %s and drain once an "
                "endpoint is set",
                cfg.store.path,
            )
        for runner in self.runners.values():
            runner.task = asyncio.create_task(runner.run(), name=f"driver:{runner.name}")
        self.tasks.append(asyncio.create_task(self._guard("events", self._events_loop), name="events"))
        self.tasks.append(asyncio.create_task(self._guard("maintenance", self._maintenance_loop), name="maint"))
        self.tasks.append(asyncio.create_task(self._guard("health", self._health_loop), name="health"))
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

    async def _guard(self, name: str, fn) -> None:
        """Supervise an internal task: log, back off, restart; never let it die silently."""
        delay = 1.0
        while True:
            try:
                await fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("task %s failed; restarting in %.0f s", name, delay)
                self.emit(
                    Event(
                        "agent.task_fault",
                        f"internal task {name} failed: {exc!r}"[:500],
                        level="alarm",
                        data={"task": name},
                    )
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def _events_loop(self) -> None:
        """Events raised while no batches flow (a driver is down) still reach the store within a second."""
        while True:
            await asyncio.sleep(1.0)
            if self._pending_events or self._events_overflow:
                events = self._take_events()
                try:
                    await self.worker.call(self.store.append_events, events)
                except sqlite3.Error:
                    for e in events:
                        self.emit(e)
                    raise
                if self.uplink is not None:
                    self.uplink.wake.set()

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.store.maintenance_interval_s)
            events = await self.worker.call(self.store.maintain)
            for e in events:
                log.warning("%s", e.message)

    # ---------------------------------------------------------------- health
    async def health(self) -> dict[str, Any]:
        st = await self.worker.call(self.store.stats)
        now = time.monotonic()
        up = self.uplink
        acked_msgs = up.stats.acked_msgs if up else 0
        acked_readings = up.stats.acked_readings if up else 0
        t0, m0, r0 = self._last_rates
        dt = max(now - t0, 1e-6)
        self._last_rates = (now, acked_msgs, acked_readings)
        return {
            "v": 1,
            "type": "health",
            "rig": self.cfg.rig,
            "ts": time.time_ns() // 1_000_000,
            "uptime_s": round(now - self.started_monotonic, 1),
            "version": __version__,
            "store_depth_readings": st["depth_readings"],
            "store_depth_events": st["depth_events"],
            "store_depth_cycles": st["depth_cycles"],
            "oldest_unsent_age_s": round(st["oldest_unsent_age_s"], 1),
            "store_bytes": st["bytes"],
            "dropped_readings": st["dropped_readings"],
            "publish_rate_msgs_s": round((acked_msgs - m0) / dt, 2),
            "readings_rate_s": round((acked_readings - r0) / dt, 1),
            "acked_readings": acked_readings,
            "publish_errors": up.stats.errors if up else 0,
            "uplink_state": self.link.state if self.link else "off",
            "drivers": [r.status() for r in self.runners.values()],
        }

    async def _health_loop(self) -> None:
        import orjson

        cadence = HealthCadence.from_config(self.cfg.uplink)  # on change plus a heartbeat (agent/healthcadence.py)
        while True:
            await asyncio.sleep(cadence.sleep_s(time.monotonic()))
            h = await self.health()
            self._last_health = h
            log.info(
                "health depth=%d oldest_unsent_s=%.1f store_bytes=%d dropped=%d uplink=%s acked_rate=%.1f/s "
                "errors=%d drivers=%s",
                h["store_depth_readings"],
                h["oldest_unsent_age_s"],
                h["store_bytes"],
                h["dropped_readings"],
                h["uplink_state"],
                h["readings_rate_s"],
                h["publish_errors"],
                ",".join(f"{d['name']}:{d['state']}" for d in h["drivers"]),
            )
            msg = cadence.observe(h, time.monotonic(), self.uplink.stats.acked_msgs if self.uplink else 0)
            if msg is not None and self.link is not None and self.link.connected.is_set() and self.uplink is not None:
                try:
                    self.link.publish(health_topic(self.cfg.uplink, self.cfg.rig), orjson.dumps(msg))
                    cadence.published(time.monotonic())
                except Exception as exc:  # noqa: BLE001 - health is best effort; the next one replaces it
                    log.debug("health publish failed: %r", exc)

    def healthy(self) -> bool:
        """For the service watchdog: every internal task alive and the store thread answering."""
        return all(not t.done() for t in self.tasks)

    # ---------------------------------------------------------------- stop
    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop drivers, commit what is in flight, publish what fits in ``drain_timeout_s``, close cleanly."""
        log.info("agent stopping")
        for svc in reversed(self.services):
            try:
                await svc.stop()
            except Exception:
                log.exception("service %s failed to stop", type(svc).__name__)
        for runner in self.runners.values():
            if runner.task is not None:
                runner.task.cancel()
        driver_tasks = [r.task for r in self.runners.values() if r.task]
        if driver_tasks:
            _, stuck = await asyncio.wait(driver_tasks, timeout=10.0)  # a driver's close is bounded at 5 s
            if stuck:
                log.error("stopping: drivers did not stop within 10 s: %s", ",".join(t.get_name() for t in stuck))
        log.info("stopping: drivers stopped")
        events = self._take_events()
        if events:
            try:
                await self.worker.call(self.store.append_events, events)
            except sqlite3.Error as exc:
                log.error("could not store %d events at shutdown: %s", len(events), exc)
        if self.uplink is not None and self.link is not None:
            self.uplink.flush_now = True
            self.uplink.wake.set()
            deadline = time.monotonic() + drain_timeout_s
            while time.monotonic() < deadline and self.link.connected.is_set():
                st = await self.worker.call(self.store.stats)
                if (
                    not (st["depth_readings"] or st["depth_events"] or st["depth_cycles"])
                    and self.uplink.in_flight == 0
                ):
                    break
                await asyncio.sleep(0.1)
            log.info("stopping: store drained as far as the link allowed")
        for t in self.tasks:
            t.cancel()
        if self.tasks:  # bounded: a task that ignores its cancellation must not hang the shutdown
            _, stuck = await asyncio.wait(self.tasks, timeout=5.0)
            if stuck:
                log.error("stopping: tasks did not stop within 5 s: %s", ",".join(t.get_name() for t in stuck))
        log.info("stopping: tasks stopped")
        if self.uplink is not None:
            await self.uplink.drain(max(0.5, drain_timeout_s / 2))
            log.info("stopping: in-flight publishes settled (%d left)", self.uplink.in_flight)
        if self.link is not None:
            await asyncio.to_thread(self.link.stop, 3.0)
        await self.worker.call(self.store.close)
        self.worker.shutdown()
        log.info("agent stopped")
