"""Supervision: a driver that throws is closed, reported, and restarted with exponential backoff.

One runner per driver instance; a failing driver never stops the others, the store or the uplink. The delay
comes from the project's one ``Backoff`` (drivers/backoff.py): a run that lasted ``stable_after_s`` resets it, so
a driver that fails once a day restarts quickly each time. Repeated identical faults are reported as one event
per backoff step (not one per retry forever: the delay caps the rate at one per ``backoff_max_s``).

``Drivers`` is the running set (a runner and a validator per enabled driver): built and checked as a whole
(one cell id from two drivers is refused), changed as a whole on reload.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from agent.config import AgentConfig, SupervisorConfig
from agent.validate import Validator
from drivers.backoff import Backoff
from drivers.base import Driver, DriverConfig, DriverContext, Event, ReadingBatch
from drivers.registry import get_driver_class

log = logging.getLogger("agent.supervise")


def driver_backoff(sup: SupervisorConfig) -> Backoff:
    return Backoff(initial_s=sup.backoff_initial_s, max_s=sup.backoff_max_s, stable_after_s=sup.stable_after_s)


class DriverRunner:
    def __init__(
        self,
        config: DriverConfig,
        ctx: DriverContext,
        cfg: AgentConfig,
        ingest: Callable[[DriverRunner, ReadingBatch], Awaitable[None]],
        emit: Callable[[Event], None],
    ):
        self.config = config
        self.name = config.name or config.type
        self.ctx = ctx
        self.ingest = ingest
        self.emit = emit
        self.cls = get_driver_class(config.type)
        self.validator = Validator(cfg.validate_, self.name)
        self.backoff = driver_backoff(cfg.supervisor)
        self.driver: Driver | None = None
        self.state = "starting"
        self.restarts = 0
        self.last_error: str | None = None
        self.batches = 0
        self.readings = 0
        self.last_batch_monotonic: float | None = None
        self.task: asyncio.Task[None] | None = None

    def make_driver(self) -> Driver:
        return self.cls(self.config, self.ctx)

    def cells(self) -> tuple[str, ...]:
        return self.driver.cells if self.driver is not None else self.make_driver().cells

    def reconfigure(self, cfg: AgentConfig) -> None:
        """New plausibility ranges and backoff settings for a driver that keeps running (reload)."""
        self.validator.cfg = cfg.validate_
        attempts = self.backoff.attempts
        self.backoff = driver_backoff(cfg.supervisor)
        self.backoff.attempts = attempts

    def status(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"batches": self.batches, "readings": self.readings}
        if self.driver is not None:
            try:
                detail.update(self.driver.status())
            except Exception as exc:  # noqa: BLE001 - a status() bug must not break health
                detail["status_error"] = repr(exc)[:200]
        return {
            "name": self.name,
            "type": self.config.type,
            "state": self.state,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "detail": detail,
        }

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"driver:{self.name}")

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            self.state = "starting"
            try:
                self.driver = self.make_driver()
                await self.driver.open()
                self.state = "running"
                if self.restarts:
                    log.info("driver recovered name=%s restarts=%d", self.name, self.restarts)
                while True:
                    batch = await self.driver.read()
                    self.batches += 1
                    self.readings += len(batch)
                    self.last_batch_monotonic = time.monotonic()
                    if len(batch):
                        await self.ingest(self, batch)
            except asyncio.CancelledError:
                self.state = "stopped"
                await self._close()
                raise
            except Exception as exc:  # noqa: BLE001 - supervision boundary: report, back off, restart
                self.restarts += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                self.backoff.succeeded_after(time.monotonic() - started)
                delay = self.backoff.next_delay()
                log.error("driver failed name=%s error=%s restart_in_s=%.1f", self.name, self.last_error, delay)
                log.debug("driver traceback name=%s\n%s", self.name, traceback.format_exc())
                self.emit(
                    Event(
                        "driver.fault",
                        f"driver {self.name} failed: {self.last_error}; restarting in {delay:.1f} s",
                        level="warning",
                        source=self.name,
                        data={"error": self.last_error, "restarts": self.restarts, "backoff_s": delay},
                    )
                )
                await self._close()
                self.state = "backoff"
                await asyncio.sleep(delay)

    async def _close(self) -> None:
        if self.driver is None:
            return
        try:
            async with asyncio.timeout(5.0):  # not wait_for: on 3.11 it can swallow a cancellation
                await self.driver.close()
        except Exception as exc:  # noqa: BLE001 - close must not take the supervisor down
            log.warning("driver close failed name=%s error=%r", self.name, exc)
        self.driver = None


class CellClash(ValueError):
    """Two drivers would report the same cell id."""


class Drivers:
    """The running driver set. ``ingest`` and ``emit`` are the agent's; runners live on the event loop."""

    def __init__(
        self,
        ingest: Callable[[DriverRunner, ReadingBatch], Awaitable[None]],
        emit: Callable[[Event], None],
        stored_cells: Callable[[], Collection[str]] = lambda: (),
    ):
        self.ingest = ingest
        self.emit = emit
        self.ctx = DriverContext(emit=emit, stored_cells=stored_cells)
        self.runners: dict[str, DriverRunner] = {}

    def plan(self, cfg: AgentConfig, keep: Collection[str] = ()) -> dict[str, DriverRunner]:
        """Runners for every enabled driver of ``cfg`` (running ones named in ``keep`` reused), checked as a
        whole; raises CellClash and touches nothing if one cell id would come from two drivers."""
        out: dict[str, DriverRunner] = {}
        owners: dict[str, str] = {}
        for dcfg in (d for d in cfg.drivers if d.enabled):
            if (dcfg.name or dcfg.type) in keep:
                runner = self.runners[dcfg.name or dcfg.type]
            else:
                runner = DriverRunner(dcfg, self.ctx, cfg, self.ingest, self.emit)
            for cell in runner.cells():
                if cell in owners:
                    raise CellClash(
                        f"cell id {cell!r} is reported by drivers {owners[cell]!r} and {runner.name!r}; cell ids "
                        "must be unique within the rig (set cell ids or a cell_prefix in one of them)"
                    )
                owners[cell] = runner.name
            out[runner.name] = runner
        return out

    def start(self, runners: dict[str, DriverRunner]) -> None:
        for name, runner in runners.items():
            self.runners[name] = runner
            runner.start()

    async def stop(self, names: list[str], timeout_s: float | None = None) -> None:
        """Cancel the named runners and wait (bounded by ``timeout_s`` if given) for them to close."""
        tasks = [t for n in names if (t := self.runners[n].task) is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=timeout_s)
            if stuck:
                log.error("drivers did not stop within %.0f s: %s", timeout_s, ",".join(t.get_name() for t in stuck))
        for n in names:
            del self.runners[n]

    def status(self) -> list[dict[str, Any]]:
        return [r.status() for r in self.runners.values()]

    def starting(self) -> list[str]:
        """Drivers that have not yet made their first attempt to open their device."""
        return [n for n, r in self.runners.items() if r.state == "starting"]
