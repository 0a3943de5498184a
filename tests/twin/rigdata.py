"""Batches for twin tests from the simulator's rig, faults included.

Two simulators exist while the physics-grade one (branch ``sim``) is not yet on main: the small BasicRig (its own
model, no fault injection) and the physics rig (NMC811 from the parameter files, faults by config). The helpers
here run the same tests on either: ``basic_rig_chemistry`` is the model the twin should assume, ``fault_rig``
builds a rig with the test's faults (by config on the physics rig, by hand on the small one).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from drivers.base import ReadingBatch
from simulator import BasicRig, BasicRigSpec
from simulator.chemistry import Chemistry, get_chemistry

T0_MS = 1_790_000_000_000


def basic_rig_chemistry() -> Chemistry:
    import simulator.basic as basic

    if not hasattr(basic, "ocv_nmc"):  # the physics-grade BasicRig is NMC811 from the parameter files
        return get_chemistry("nmc811")
    soc = np.linspace(0, 1, 201)
    one = np.array([0.5])
    return Chemistry(name="basic-nmc", cell="simulator.BasicRig", nominal_capacity_ah=5.0, v_min=2.5, v_max=4.2,
                     ocv_soc=soc, ocv_v=basic.ocv_nmc(soc), rc_soc=one, r0_ohm=one * 0 + 0.025,
                     r1_ohm=one * 0 + 0.015, tau1_s=one * 0 + 40.0, r2_ohm=one * 0, tau2_s=one * 0 + 1.0,
                     heat_capacity_j_k=45.0, h_w_m2k=0.05, area_m2=1.0, source="simulator/basic.py")


def physics_rig() -> bool:
    import simulator

    return hasattr(simulator, "Rig")


Fault = Callable[[BasicRig, float, dict[str, np.ndarray]], None]
"""A fault: called after each rig step with (rig, simulated time s, measured arrays) and may change either."""


def run(cells: int = 8, seconds: float = 4 * 3600, dt_s: float = 1.0, batch_ticks: int = 256, seed: int = 0,
        faults: list[Fault] = (), spec_kw: dict | None = None, rig: BasicRig | None = None, t0_ms: int = T0_MS):
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
        yield ReadingBatch.build(rig.cell_ids, np.tile(np.arange(n), k), np.repeat(ts, n), v.ravel(), i.ravel(),
                                 t.ravel())
