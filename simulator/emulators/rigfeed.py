"""The simulated rig behind every emulator: stepped on a wall-clock tick, its latest sensor view kept at hand.

Any rig with the seam ``cell_ids``, ``step(dt_s)``, ``measure()`` (voltage_v, current_a, temperature_c arrays)
works; by default a ``simulator.BasicRig``. The feed also keeps a bounded history of what it served, so tests can
check that what the agent stored is what the emulator put on the wire.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Any, Protocol

import numpy as np

FIELDS = ("voltage_v", "current_a", "temperature_c")


class Rig(Protocol):
    cell_ids: tuple[str, ...]

    def step(self, dt_s: float) -> None: ...

    def measure(self) -> dict[str, np.ndarray]: ...


def basic_rig(cells: int, seed: int = 0, capacity_ah: float = 5.0) -> Rig:
    from simulator import BasicRig, BasicRigSpec

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
        self.latest = np.zeros((self.n, 3))
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

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        nxt = loop.time()
        while True:
            nxt += self.tick_s
            await asyncio.sleep(max(0.0, nxt - loop.time()))
            self.tick()

    def info(self) -> dict[str, Any]:
        return {"cells": self.n, "tick_s": self.tick_s, "speed": self.speed}
