"""``SampledDriver``: the shared work of a driver, done once, around small hooks each driver fills.

python-can's ``BusABC.recv()`` is the model: it handles timeouts and filtering, and an interface only implements
``_recv_internal``. Here ``read()`` waits for the next sample on the driver's pacer (``drivers.pacing``), fails
fast if the transport died (in the reader thread or in a background task), then calls the driver's ``_sample``
hook; ``open()`` and ``close()`` wrap the transport hooks and start and stop the reader thread and the tasks,
and closing never raises. A driver that samples a state keeps it in ``self.fresh`` (``drivers.stale.Freshness``)
and returns ``self.snapshot(now_ms)``: fresh values, stale ones flagged, expired ones left out, read under the
lock its reader thread writes with. Device up/down and retry spacing are ``drivers.stale.DeviceHealth``.

Hooks, all optional but ``_sample``:

- ``_open_transport()`` / ``_close_transport()``: open and release the port, bus or connections;
- ``_receive()``: one step of the reader thread (a driver that sets ``threaded = True``), e.g. one frame or one
  line received and decoded into ``self.fresh`` under ``self.lock``; an exception from it ends the thread and
  makes the next ``read`` raise ``DriverError``, so the supervisor reopens the transport;
- ``_sample(now_ms, ticks)``: the batch for this sample (``ticks`` > 1 only for a catching-up simulated clock);
- ``_interval_s()``: the spacing of the next sample (default: the pacer's; a failing device: its backoff);
- ``_wait()``: how ``read`` waits (default: the pacer; a driver fed by its own tasks waits for them instead).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any

import numpy as np

from drivers.base import Driver, DriverConfig, DriverContext, DriverError, ReadingBatch
from drivers.pacing import Pacer
from drivers.stale import Freshness

log = logging.getLogger("drivers")


class Deltas:
    """Counters read as "how many since the last look" (a reader thread counts, ``read`` reports the news)."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def since_last(self, **totals: int) -> dict[str, int]:
        out = {k: v - self._seen.get(k, 0) for k, v in totals.items()}
        self._seen.update(totals)
        return out


class SampledDriver(Driver):
    """A driver whose ``read`` samples at a pace; subclasses fill the hooks listed in the module docstring."""

    threaded: bool = False  # True: run ``_receive`` in a loop in a reader thread while open
    fresh: Freshness | None = None  # last value and age per (cell, field), for drivers that sample a state

    def __init__(self, config: DriverConfig, ctx: DriverContext, pacer: Pacer | None):
        super().__init__(config, ctx)
        self.pacer = pacer  # None: unpaced, every read is due at once (benchmarks)
        self.lock = threading.Lock()  # guards what the reader thread shares with the event loop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._failure: BaseException | None = None
        self._wake: asyncio.Event | None = None

    # ------------------------------------------------------------------ hooks
    async def _open_transport(self) -> None:
        """Open the port, bus or connections; raise ``DriverError`` with the reason if that fails."""

    def _close_transport(self) -> None:
        """Release the transport (called from ``close``, which catches anything raised here)."""

    def _receive(self) -> None:
        """One step of the reader thread (threaded drivers); must return within ~0.1 s so stop is prompt."""
        raise NotImplementedError

    @abc.abstractmethod
    async def _sample(self, now_ms: int, ticks: int) -> ReadingBatch:
        """The batch for this sample."""

    def _interval_s(self) -> float | None:
        """Spacing before the next sample; None: the pacer's interval."""
        return None

    def _failure_message(self, exc: BaseException) -> str:
        return f"driver {self.name} failed: {exc!r}"

    async def _wait(self) -> int:
        """Wait for the next sample; return the ticks due."""
        if self.pacer is None:
            return 1
        return await self.pacer.wait(self._interval_s())

    # ------------------------------------------------------------------ the shared work
    async def open(self) -> None:
        self._wake = asyncio.Event()
        await self._open_transport()
        if self.threaded:
            self._thread = threading.Thread(target=self._reader, name=f"{self.config.type}:{self.name}", daemon=True)
            self._thread.start()
        if self.pacer is not None:
            self.pacer.start()

    async def read(self) -> ReadingBatch:
        ticks = await self._wait()
        self.raise_if_failed()
        return await self._sample(self.ctx.clock_ms(), ticks)

    async def close(self) -> None:
        self._stop.set()
        await self._cancel_tasks()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
            self._thread = None
        self._close_quietly()

    def snapshot(self, now_ms: int, cells: np.ndarray | None = None) -> ReadingBatch:
        """``fresh`` as a batch (default: every cell): values within their period as they are, older ones as the
        last seen with ``STALE``, those older than the device's down time left out; read under the lock the
        reader thread writes with."""
        assert self.fresh is not None, "snapshot() needs self.fresh"
        with self.lock:
            return self.fresh.batch(self.cells, now_ms, cells)

    @property
    def stopping(self) -> bool:
        """``close`` has begun: loops in tasks and threads end on this, not only on cancellation."""
        return self._stop.is_set()

    def raise_if_failed(self) -> None:
        if self._failure is not None:
            raise DriverError(self._failure_message(self._failure)) from self._failure

    def fail(self, exc: BaseException) -> None:
        """Record that the transport died (from any thread); the next ``read`` raises."""
        if self._failure is None and not self._stop.is_set():
            self._failure = exc

    def start_task(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """A background task of this driver (a device's polling loop): if it dies, the next ``read`` raises."""
        task = asyncio.create_task(coro, name=f"{self.config.type}:{self.name}:{name}")
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            self.fail(exc)
            if self._wake is not None:
                self._wake.set()

    def _reader(self) -> None:
        while not self._stop.is_set():
            try:
                self._receive()
            except Exception as exc:  # noqa: BLE001 - the transport is gone (unplugged adapter, closed port)
                self.fail(exc)
                return

    async def _cancel_tasks(self) -> None:
        if not self._tasks:
            return
        for t in self._tasks:
            t.cancel()
        _, pending = await asyncio.wait(self._tasks, timeout=1.0)
        if pending:  # a request stuck in a client: closing the transport fails it; a lost cancellation: again
            self._close_quietly()
            for t in pending:
                t.cancel()
            await asyncio.wait(pending, timeout=2.0)
        self._tasks.clear()

    def _close_quietly(self) -> None:
        try:
            self._close_transport()
        except Exception:
            log.debug("driver %s: error while closing its transport", self.name, exc_info=True)
