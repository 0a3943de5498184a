"""The processors' stage (the twin) off the event loop: one worker thread, batches in the order they arrived.

A batch's twin work (the EKF, the cycle tracker, the SOH forecast: ~19 ms per cell that finished a cycle) is
CPU-bound numpy; on the loop it would hold up every driver, the uplink and the dashboard for that long. One thread,
not a pool: the processors stay single-threaded as they are written, and batches leave the stage in the order they
entered it, so their cycles reach the store (and the uplink) in the order they were made. Bounded by the drivers:
each driver awaits its own batch, so at most one batch per driver waits here.

A driver stopped (reload, shutdown) while its batch is in the stage would leave the twin advanced and the batch
unstored: the rest of a batch's ingest therefore runs as a shielded task, and ``drain`` lets ``Agent.stop`` wait
for those before it closes the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from drivers.base import Event, ReadingBatch

log = logging.getLogger("agent")
Cycles = list[dict[str, Any]]


class Processor(Protocol):
    """A stage between validation and the store (the twin): readings in, events and completed cycles out."""

    def process(self, batch: ReadingBatch, source: str) -> tuple[list[Event], Cycles]: ...


class ProcessorStage:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twin")
        self._in_flight: set[asyncio.Task[None]] = set()
        self.faults = 0  # processor calls that raised (the batch is stored without their output)

    async def run(
        self, processors: Sequence[Processor], batch: ReadingBatch, source: str
    ) -> tuple[list[Event], Cycles]:
        """Every processor on ``batch`` in the stage's thread; a processor that raises costs its output, not the batch."""
        procs = list(processors)  # a rebuild (reload, model update) swaps the list between two batches
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._process, procs, batch, source)

    def _process(self, processors: list[Processor], batch: ReadingBatch, source: str) -> tuple[list[Event], Cycles]:
        events: list[Event] = []
        cycles: Cycles = []
        for proc in processors:
            try:
                ev, cy = proc.process(batch, source)
                events.extend(ev)
                cycles.extend(cy)
            except Exception as exc:  # supervision boundary: report, keep the batch
                self.faults += 1
                log.exception("processor %s failed", type(proc).__name__)
                msg = f"{type(proc).__name__} failed: {exc!r}"[:500]
                events.append(Event("agent.processor_fault", msg, level="warning", source="twin"))
        return events, cycles

    async def shielded(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` to completion even if the caller (a driver's task) is cancelled meanwhile."""
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        await asyncio.shield(task)

    async def drain(self, timeout_s: float) -> int:
        """Wait (bounded) for the batches still on their way to the store; returns how many did not finish."""
        if not self._in_flight:
            return 0
        _, stuck = await asyncio.wait(set(self._in_flight), timeout=timeout_s)
        if stuck:
            log.error("stopping: %d batches still in the twin after %.0f s", len(stuck), timeout_s)
        return len(stuck)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
