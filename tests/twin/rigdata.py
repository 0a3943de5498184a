"""Batches for twin tests from the simulator's rig (``simulator.BasicRig`` or a ``simulator.Rig`` with faults)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from drivers.base import ReadingBatch
from simulator import BasicRig, BasicRigSpec
from simulator.chemistry import Chemistry, get_chemistry

T0_MS = 1_790_000_000_000


def basic_rig_chemistry() -> Chemistry:
    """The chemistry of BasicRig's cells (NMC811, LG M50 parameters), as the twin should assume it."""
    return get_chemistry("nmc811")


Fault = Callable[[object, float, dict[str, np.ndarray]], None]
"""A test-made disturbance: called after each rig step with (rig, simulated time s, measured arrays)."""


def run(
    cells: int = 8,
    seconds: float = 4 * 3600,
    dt_s: float = 1.0,
    batch_ticks: int = 256,
    seed: int = 0,
    faults: list[Fault] = (),
    spec_kw: dict | None = None,
    rig: BasicRig | None = None,
    t0_ms: int = T0_MS,
):
    """Yield ReadingBatch objects of ``batch_ticks`` samples per cell from a BasicRig (``rig`` to continue one)."""
    rig = rig or BasicRig(BasicRigSpec(cells=cells, seed=seed, **(spec_kw or {})))
    cells = len(rig.cell_ids)
    n = cells
    total = int(seconds / dt_s)
    tick = 0
    while tick < total:
        k = min(batch_ticks, total - tick)
        v, i, t = np.empty((k, n)), np.empty((k, n)), np.empty((k, n))
        for j in range(k):
            rig.step(dt_s)
            m = rig.measure()
            for f in faults:
                f(rig, (tick + j + 1) * dt_s, m)
            v[j], i[j], t[j] = m["voltage_v"], m["current_a"], m["temperature_c"]
        ts = t0_ms + np.round((np.arange(tick, tick + k) + 1) * dt_s * 1000).astype(np.int64)
        tick += k
        yield ReadingBatch.build(
            rig.cell_ids, np.tile(np.arange(n), k), np.repeat(ts, n), v.ravel(), i.ravel(), t.ravel()
        )
