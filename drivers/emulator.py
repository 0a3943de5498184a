"""What every protocol emulator shares: the simulated rig it serves, its tick loop, and a background runner.

An emulator is a driver's test peer (Telegraf keeps a plugin's peer with the plugin): it serves a simulated rig
over the driver's protocol, laid out by the very profile the driver reads, so each side checks the other. Each
lives beside its driver (``drivers/<driver>/emulator.py``) and fills two hooks of ``Emulator``: ``start``/``stop``
(open and close its server or port) and what to do per tick (``on_tick``, or its own ``schedules``).

``RigFeed`` steps any rig with the seam ``cell_ids``, ``step(dt_s)``, ``measure()`` on a wall-clock tick (by
default a ``simulator.BasicRig``) and keeps a bounded history of what it served, so tests can check that what the
agent stored is what the emulator put on the wire. ``Background`` runs an emulator in a thread with its own event
loop, so a test's thread can block on a driver, an agent or a subprocess while it keeps serving.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np

from drivers.base import FIELDS
from drivers.pacing import Pacer

MAX_CATCH_UP_TICKS = 10  # a loaded machine: step the rig at most this many ticks at once, then carry on


class Rig(Protocol):
    cell_ids: tuple[str, ...]

    def step(self, dt_s: float) -> None: ...

    def measure(self) -> dict[str, np.ndarray]: ...


def basic_rig(cells: int, seed: int = 0, capacity_ah: float = 5.0) -> Rig:
    from simulator.basic import BasicRig, BasicRigSpec

    return BasicRig(BasicRigSpec(cells=cells, seed=seed, capacity_ah=capacity_ah))


class RigFeed:
    """Steps ``rig`` every ``tick_s`` of wall time by ``tick_s * speed`` simulated seconds."""

    def __init__(self, rig: Rig, tick_s: float = 0.1, speed: float = 1.0, history: int = 4096):
        self.rig = rig
        self.tick_s = tick_s
        self.speed = speed
        self.n = len(rig.cell_ids)
        self.lock = threading.Lock()
        self.history: collections.deque[tuple[int, np.ndarray]] = collections.deque(maxlen=history)
        self.override: dict[tuple[int, int], float] = {}  # (cell, field) -> value served instead (fault tests)
        self.latest = np.zeros((self.n, len(FIELDS)))
        self.ts_ms = 0
        self._sample()

    def _sample(self) -> None:
        m = self.rig.measure()
        v = np.column_stack([np.asarray(m[f], dtype=np.float64) for f in FIELDS])
        for (cell, field), value in list(self.override.items()):
            v[cell, field] = value
        ts = time.time_ns() // 1_000_000
        with self.lock:
            self.latest, self.ts_ms = v, ts
            self.history.append((ts, v))

    def tick(self) -> None:
        self.rig.step(self.tick_s * self.speed)
        self._sample()

    def set_override(self, cell: int, field: str, value: float | None) -> None:
        """Serve ``value`` for one cell's field from now on (None: back to the rig's own value)."""
        key = (cell, FIELDS.index(field))
        if value is None:
            self.override.pop(key, None)
        else:
            self.override[key] = value
        self._sample()

    def snapshot(self) -> tuple[int, np.ndarray]:
        with self.lock:
            return self.ts_ms, self.latest

    def served(self) -> tuple[np.ndarray, np.ndarray]:
        """(ts_ms (k,), values (k, n_cells, 3)) of every sample still in the history."""
        with self.lock:
            items = list(self.history)
        return np.array([t for t, _ in items], dtype=np.int64), np.stack([v for _, v in items])

    def info(self) -> dict[str, Any]:
        return {"cells": self.n, "tick_s": self.tick_s, "speed": self.speed}


Schedule = tuple[float, Callable[[int], Awaitable[None]]]  # (period_s, callback(ticks due))


class Emulator(abc.ABC):
    """Base of the protocol emulators: ``run()`` = ``start()``, the tick loop until cancelled, ``stop()``."""

    def __init__(self, feed: RigFeed):
        self.feed = feed

    @abc.abstractmethod
    async def start(self) -> None:
        """Open the server or port and begin answering (the rig's current values are served at once)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop serving and release the server or port; must not raise. ``start`` may be called again."""

    async def on_tick(self) -> None:
        """Hook: after each step of the rig (refresh registers, stream lines)."""

    def schedules(self) -> list[Schedule]:
        """What runs when, as (period_s, callback) pairs; by default the rig steps every feed tick, then
        ``on_tick``. An emulator with more clocks (CAN frames at their cycle times) adds its own."""
        return [(self.feed.tick_s, self._step)]

    async def _step(self, ticks: int) -> None:
        for _ in range(ticks):
            self.feed.tick()
        await self.on_tick()

    async def tick_loop(self) -> None:
        """Run every schedule on its own pacer until cancelled."""
        await asyncio.gather(*(self._every(period_s, fn) for period_s, fn in self.schedules()))

    @staticmethod
    async def _every(period_s: float, fn: Callable[[int], Awaitable[None]]) -> None:
        pacer = Pacer(period_s, catch_up=True, max_ticks=MAX_CATCH_UP_TICKS)
        pacer.start()
        while True:
            await fn(await pacer.wait())

    async def run(self) -> None:
        """Serve until cancelled."""
        await self.start()
        try:
            await self.tick_loop()
        finally:
            await self.stop()


class Background:
    """An emulator in a background thread with its own event loop (tests, notebooks, embedding).

    Faults are switched from the caller's thread by plain attribute writes (``emu.faults[2] = "silent"``).
    """

    def __init__(self, emulator: Emulator, name: str = "emulator"):
        self.emulator = emulator
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ticks: asyncio.Task[None] | None = None
        self._ready = threading.Event()

    def _main(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def call(self, fn: Callable[[], Awaitable[Any]], timeout_s: float = 10.0) -> Any:
        """Run ``fn()`` (a coroutine function) on the emulator's loop and wait for its result."""
        assert self.loop is not None

        async def run() -> Any:
            return await fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout_s)

    def start(self, timeout_s: float = 10.0) -> Background:
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"{self.name}: the event loop thread did not start within {timeout_s} s")
        self.call(self.emulator.start, timeout_s)

        async def ticks() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._ticks = task
            await self.emulator.tick_loop()

        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(ticks(), self.loop)
        return self

    def restart_server(self, down_s: float = 0.0) -> None:
        """Stop serving (the peer vanishes), wait ``down_s``, serve again (it returns)."""
        self.call(self.emulator.stop)
        if down_s:
            threading.Event().wait(down_s)
        self.call(self.emulator.start)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            if self._ticks is not None:
                self._ticks.cancel()
                await asyncio.gather(self._ticks, return_exceptions=True)
            await self.emulator.stop()

        try:
            self.call(shutdown, timeout_s)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout_s)
            self._thread = None
