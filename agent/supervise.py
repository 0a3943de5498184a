"""Supervision: a driver that throws is closed, reported, and restarted with exponential backoff.

One runner per driver instance; a failing driver never stops the others, the store or the uplink. A run that
lasted ``stable_after_s`` resets the backoff, so a driver that fails once a day restarts quickly each time.
Repeated identical faults are reported as one event per backoff step (not one per retry forever: the delay caps
the rate at one per ``backoff_max_s``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from agent.config import SupervisorConfig
from drivers.base import Driver, DriverConfig, DriverContext, Event, ReadingBatch
from drivers.registry import get_driver_class

log = logging.getLogger("agent.supervise")


class DriverRunner:
    def __init__(
        self,
        config: DriverConfig,
        ctx: DriverContext,
        sup: SupervisorConfig,
        ingest: Callable[[Driver, ReadingBatch], Awaitable[None]],
        emit: Callable[[Event], None],
    ):
        self.config = config
        self.name = config.name or config.type
        self.ctx = ctx
        self.sup = sup
        self.ingest = ingest
        self.emit = emit
        self.cls = get_driver_class(config.type)
        self.driver: Driver | None = None
        self.state = "starting"
        self.restarts = 0
        self.last_error: str | None = None
        self.batches = 0
        self.readings = 0
        self.last_batch_monotonic: float | None = None
        self.task: asyncio.Task | None = None

    def make_driver(self) -> Driver:
        return self.cls(self.config, self.ctx)

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

    async def run(self) -> None:
        backoff = self.sup.backoff_initial_s
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
                        await self.ingest(self.driver, batch)
            except asyncio.CancelledError:
                self.state = "stopped"
                await self._close()
                raise
            except Exception as exc:  # noqa: BLE001 - supervision boundary: report, back off, restart
                self.restarts += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                if time.monotonic() - started >= self.sup.stable_after_s:
                    backoff = self.sup.backoff_initial_s
                log.error("driver failed name=%s error=%s restart_in_s=%.1f", self.name, self.last_error, backoff)
                log.debug("driver traceback name=%s\n%s", self.name, traceback.format_exc())
                self.emit(
                    Event(
                        "driver.fault",
                        f"driver {self.name} failed: {self.last_error}; restarting in {backoff:.1f} s",
                        level="warning",
                        source=self.name,
                        data={"error": self.last_error, "restarts": self.restarts, "backoff_s": backoff},
                    )
                )
                await self._close()
                self.state = "backoff"
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.sup.backoff_max_s)

    async def _close(self) -> None:
        if self.driver is None:
            return
        try:
            async with asyncio.timeout(5.0):  # not wait_for: on 3.11 it can swallow a cancellation
                await self.driver.close()
        except Exception as exc:  # noqa: BLE001 - close must not take the supervisor down
            log.warning("driver close failed name=%s error=%r", self.name, exc)
        self.driver = None
