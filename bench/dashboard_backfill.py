"""What one new live view costs the agent: the backfill of its window (issue 14.7).

A store holds an hour of 16 cells at 10 Hz (576,000 readings). A browser asking for all 16 cells over a one-hour
window gets at most 3,600 points per cell; this measures the reader's ``readings_for_cells`` for that request:
wall time (median of N), the peak of Python allocations (tracemalloc: the rows that cross from SQLite into Python
and what is built from them), and the points returned.

    .venv/bin/python bench/dashboard_backfill.py [--cells 16] [--hz 10] [--window-s 3600] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.dashboard.hub import MAX_POINTS_PER_CELL
from agent.dashboard.reader import StoreReader
from agent.store import Store
from drivers.base import ReadingBatch


def fill(path: Path, cells: int, hz: float, window_s: float) -> int:
    store = Store(path, synchronous="NORMAL")
    store.open()
    ids = tuple(f"c{i:02d}" for i in range(cells))
    now = time.time_ns() // 1_000_000
    step_ms = int(1000 / hz)
    ticks = int(window_s * hz)
    chunk = 1000  # ticks per batch
    for t0 in range(0, ticks, chunk):
        n = min(chunk, ticks - t0)
        ts = np.repeat(now - int(window_s * 1000) + step_ms * np.arange(t0, t0 + n, dtype=np.int64), cells)
        cell = np.tile(np.arange(cells), n)
        k = np.arange(n * cells, dtype=np.float64)
        store.append(ReadingBatch.build(ids, cell, ts, 3.6 + 1e-6 * k, -1.0 + 0 * k, 25.0 + 0 * k))
    store.close()
    return ticks * cells


def main(cells: int = 16, hz: float = 10.0, window_s: float = 3600.0, repeat: int = 3) -> dict:
    with tempfile.TemporaryDirectory(prefix="bt-backfill-") as d:
        path = Path(d) / "store.db"
        rows = fill(path, cells, hz, window_s)
        rd = StoreReader(path)
        try:
            idx = sorted(rd.cells())
            start = rd.seq_at(time.time_ns() // 1_000_000 - int(window_s * 1000) - 1000)
            upto = rd.max_seqs()["readings"]
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                r = rd.readings_for_cells(idx, start, upto, MAX_POINTS_PER_CELL)
                times.append(time.perf_counter() - t0)
            tracemalloc.start()
            r = rd.readings_for_cells(idx, start, upto, MAX_POINTS_PER_CELL)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        finally:
            rd.close()
    return {
        "conditions": f"{cells} cells x {hz:g} Hz x {window_s:g} s in the store ({rows} readings), one view of all "
        f"{cells} cells over that window, at most {MAX_POINTS_PER_CELL} points per cell; wall time median of "
        f"{repeat}; Python 3.{sys.version_info.minor}, SQLite {__import__('sqlite3').sqlite_version}",
        "window_readings": rows,
        "points_returned": len(r),
        "seconds": round(statistics.median(times), 3),
        "python_peak_mb": round(peak / 1e6, 1),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=16)
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--window-s", type=float, default=3600.0)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    for k, v in main(a.cells, a.hz, a.window_s, a.repeat).items():
        print(f"{k}: {v}")
