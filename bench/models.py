"""Model and twin benchmark: inference latency per cycle (1 and 1000 cells), EKF steps/s, twin readings/s.

    .venv/bin/python bench/models.py

Prints figures with their conditions; ``main()`` returns them (``make bench`` collects them). onnxruntime runs as
on the edge: one intra-op thread. Timings are medians of repeated runs on a shared machine: read them as orders
of magnitude, not as guarantees.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import TwinConfig
from agent.features import cyclelife as cl_features
from agent.features.cyclelife import FIRST_CYCLE, LAST_CYCLE
from agent.inference import CycleLifePredictor, SohForecaster
from agent.twin.ekf import SocEkf
from agent.twin.model import GroupModel
from agent.twin.processor import TwinProcessor
from drivers.base import ReadingBatch


def _median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_inference(cells: int, repeat: int) -> dict:
    rng = np.random.default_rng(0)
    soh = SohForecaster()
    hist = 2.0 - 0.001 * np.arange(300)[None, :] + rng.normal(0, 0.005, (cells, 300))
    cycles = np.broadcast_to(np.arange(300, dtype=float), hist.shape)
    horizons = np.arange(1, 101, dtype=float)

    def run_soh():
        soh.forecast(cycles, hist, 2.0, horizons, 1.6)

    cl = CycleLifePredictor()
    grid = cl.grid.points
    windows = cl_features.windows(cl.refs)
    early = np.cumsum(rng.uniform(0, 2e-3, (cells, grid)), axis=1)
    curves = {w: (early, early - rng.uniform(0, 1e-3, (cells, grid))) for w in windows}  # the window medians
    cap = 1.05 + rng.normal(0, 1e-3, (cells, LAST_CYCLE - FIRST_CYCLE + 1))

    def run_cl():
        cl.predict_interval(cl_features.compute_refs(curves, cap, cl.refs))

    run_soh(), run_cl()  # warm up
    s, c = _median_s(run_soh, repeat), _median_s(run_cl, repeat)
    return {
        "soh_forecast_ms": round(s * 1e3, 3),
        "soh_us_per_cell": round(s * 1e6 / cells, 2),
        "cycle_life_ms": round(c * 1e3, 3),
        "cycle_life_us_per_cell": round(c * 1e6 / cells, 2),
        "conditions": f"{cells} cells in one call. SOH: the shipped model ({soh.ref_q.shape[0]} reference "
        f"trajectories, {soh.shifts} shifts x {soh.rates.size} rates each), 300-cycle histories (cleaned, condensed "
        f"to {soh.max_points} points), 100 horizons with the 10-90 % band and end of life; cycle life (with its interval): "
        f"{len(cl.refs)} inputs over {len(windows)} windows from {grid}-point Qd(V) curves of cycles 2..100; median of {repeat}",
    }


def bench_cycle_end(cells: int) -> dict:
    """The twin's whole per-cycle work when ``cells`` cells finish a cycle in the same batch (Qd(V), summaries,
    SOH forecast), timed inside a run of a synthetic rig of those cells."""
    cfg = TwinConfig(chemistry="nmc811")
    tp = TwinProcessor(cfg)
    n = cells
    ids = tuple(f"c{k:04d}" for k in range(n))
    t0 = 1_790_000_000_000
    dt_ms = 10_000

    def batch(k0: int, ticks: int, current: float, v0: float, dv: float) -> ReadingBatch:
        k = np.arange(k0, k0 + ticks)
        ts = np.repeat(t0 + k * dt_ms, n)
        v = np.repeat(v0 + dv * (k - k0) / max(ticks - 1, 1), n)
        return ReadingBatch.build(
            ids, np.tile(np.arange(n), ticks), ts, v, np.full(n * ticks, current), np.full(n * ticks, 25.0)
        )

    k = 0
    tp.process(batch(k, 2, 0.0, 3.6, 0.0), "sim")
    k += 2
    timings = []
    for cycle in range(4):
        for ticks, cur, v0, dv in ((180, 2.5, 3.4, 0.7), (6, 0.0, 4.1, 0.0), (90, -5.0, 4.0, -1.4)):
            tp.process(batch(k, ticks, cur, v0, dv), "sim")
            k += ticks
        t1 = time.perf_counter()
        _, cycles = tp.process(batch(k, 1, 0.0, 2.8, 0.0), "sim")  # the rest sample that ends the discharge
        timings.append(time.perf_counter() - t1)
        k += 1
        assert len(cycles) == (n if cycle >= 1 else 0) or cycle == 0
    s = statistics.median(timings[1:])
    return {
        "ms": round(s * 1e3, 2),
        "us_per_cell": round(s * 1e6 / n, 1),
        "conditions": f"{n} cells ending a cycle in one batch: Qd(V) on 1000 points from 90 discharge samples, "
        "summary, SOH forecast with its band (one batched call), sibling checks; median of 3 cycles",
    }


def bench_ekf(cells: int = 1000, steps: int = 2000) -> dict:
    model = GroupModel.build("nmc811", np.full(cells, 5.0))
    ekf = SocEkf(model)
    idx = np.arange(cells)
    rng = np.random.default_rng(0)
    ekf.initialise(idx, np.zeros(cells), np.full(cells, 3.7))
    i = np.full(cells, -5.0)
    v = 3.7 + rng.normal(0, 0.001, cells)
    dt = np.ones(cells)
    ekf.step(idx, i, v, dt)
    t0 = time.perf_counter()
    for _ in range(steps):
        ekf.step(idx, i, v, dt)
    wall = time.perf_counter() - t0
    return {
        "cell_steps_per_s": round(cells * steps / wall),
        "ticks_per_s": round(steps / wall, 1),
        "conditions": f"SocEkf.step on {cells} cells at once (3-state EKF, 2RC nmc811 tables), {steps} ticks",
    }


def bench_twin(cells: int = 1000, ticks: int = 600) -> dict:
    from tests.twin.rigdata import run

    tp = TwinProcessor(TwinConfig(chemistry="nmc811"))
    batches = list(run(cells=cells, seconds=ticks, dt_s=1.0, batch_ticks=100))
    tp.process(batches[0], "sim")
    t0 = time.perf_counter()
    n = 0
    for b in batches[1:]:
        tp.process(b, "sim")
        n += len(b)
    wall = time.perf_counter() - t0
    return {
        "readings_per_s": round(n / wall),
        "conditions": f"TwinProcessor.process: {cells} cells, batches of "
        "100 samples per cell (EKF + cycle tracker + detectors per tick), BasicRig data",
    }


def main() -> dict:
    conditions = (
        f"{platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}, "
        f"onnxruntime intra_op_num_threads=1"
    )
    return {
        "conditions": conditions,
        "inference_1_cell": bench_inference(1, 200),
        "inference_1000_cells": bench_inference(1000, 5),
        "cycle_end_1_cell": bench_cycle_end(1),
        "cycle_end_1000_cells": bench_cycle_end(1000),
        "ekf_1000_cells": bench_ekf(),
        "twin_1000_cells": bench_twin(),
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
