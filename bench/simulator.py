"""Simulator throughput: simulated seconds per wall second for 100 and 1000 cells at 1 s steps (the goal is
>= 10,000x real time for 100 cells on one core), and cycles per second for ageing runs.

    .venv/bin/python bench/simulator.py        (or make bench)

Figures are printed with their conditions; nothing is asserted (shared, noisy machines).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from simulator.rig import Rig, RigSpec


def _steps_rate(cells: int, chemistry: str, sim_s: float, dt_s: float = 1.0) -> dict:
    rig = Rig(RigSpec(cells=cells, chemistry=chemistry, seed=1))
    rig.run(600, dt_s)  # warm up (allocations, caches), includes CC-CV and CC phases
    t0 = time.perf_counter()
    rig.run(sim_s, dt_s)
    wall = time.perf_counter() - t0
    return {
        "simulated_s_per_wall_s": round(sim_s / wall),
        "us_per_step": round(wall / (sim_s / dt_s) * 1e6, 1),
        "cell_steps_per_s": round(cells * sim_s / dt_s / wall),
    }


def _ageing_rate(cells: int, cycles: int, dt_s: float, spec: RigSpec | None = None) -> dict:
    spec = spec or RigSpec(
        cells=cells,
        chemistry="lfp",
        capacity_ah=1.1,
        ambient_c=30.0,
        initial_soc=0.0,
        protocol="severson:5.4C(40%)-3.6C",
        cycles=cycles,
        seed=1,
    )
    rig = Rig(spec)
    t0 = time.perf_counter()
    rig.run(cycles * 10_000.0, dt_s, until_cycles=cycles)
    wall = time.perf_counter() - t0
    done = int(rig.cycle.sum())
    return {
        "cell_cycles_per_s": round(done / wall, 1),
        "rig_cycles_per_s": round(done / cells / wall, 2),
        "simulated_s_per_wall_s": round(rig.time_s / wall),
    }


def main() -> dict:
    cond = (
        f"one process, one core, numpy {np.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores shared, load {os.getloadavg()[0]:.1f}"
    )
    out = {
        "nmc811_100_cells_1s": {
            **_steps_rate(100, "nmc811", 20_000.0),
            "conditions": "100 LG M50 cells, CC-CV/rest/CC/rest, ageing on, 1 s steps, " + cond,
        },
        "nmc811_1000_cells_1s": {
            **_steps_rate(1000, "nmc811", 3_000.0),
            "conditions": "1000 cells, otherwise as above",
        },
        "lfp_100_cells_1s": {**_steps_rate(100, "lfp", 20_000.0), "conditions": "100 A123 26650 cells, as above"},
        "ageing_severson_64_cells": {
            **_ageing_rate(64, 30, 10.0),
            "conditions": "64 LFP 1.1 Ah cells, 5.4C(40%)-3.6C policy, 4C discharge, "
            "30 cycles at 10 s steps, Qd(V) off",
        },
        "ageing_severson_512_cells": {**_ageing_rate(512, 10, 10.0), "conditions": "512 cells, 10 cycles, as above"},
        "ageing_nmc811_48_cells": {
            **_ageing_rate(
                48,
                30,
                30.0,
                RigSpec(cells=48, chemistry="nmc811", initial_soc=0.0, cycles=30, ageing_acceleration=10.0),
            ),
            "conditions": "48 LG M50 cells (plating and cracking where the chemistry has them), default CC-CV cycle, "
            "ageing x10, 30 cycles at 30 s steps",
        },
    }
    return out


if __name__ == "__main__":
    res = main()
    for name, figs in res.items():
        print(f"{name}:")
        for k, v in figs.items():
            print(f"  {k}: {v}")
