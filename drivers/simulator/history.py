"""A simulated past for a simulated rig: ``history_cycles`` cycles run at start-up, stamped so they end now.

At the default 1 Hz and 1C a cycle takes hours, so a fresh agent would show no cycles, forecasts or end of life
for hours. The past is made by the same ``simulator.Rig`` (its own protocol and ageing model, through
``step``/``measure`` only) as fast as it allows, at a coarse step (``history_sample_s``), with ageing
``history_ageing_acceleration`` times faster; the live run then continues from the aged cells. The readings are
kept as columns (three floats per reading and sample, bounded by ``MAX_READINGS``) and handed to the agent in
batches like live ones, so they go through the same validation, twin, store and uplink; the driver's health says
they are simulated history.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from drivers.base import ReadingBatch
from simulator.rig import Rig

MAX_READINGS = 4_000_000  # cells x samples of one history at most (~100 MB as float64 columns)
CHUNK_TICKS = 4096  # samples per buffer while generating


@dataclass
class HistoryStats:
    cycles: int
    samples: int
    readings: int
    simulated_s: float
    cpu_s: float
    first_ts_ms: int
    last_ts_ms: int


class History:
    """The generated past of one rig, replayed as batches (``next_batch``) until ``done``."""

    def __init__(self, cells: tuple[str, ...], v: np.ndarray, i: np.ndarray, t: np.ndarray, ts_ms: np.ndarray):
        self.cells = cells
        self.v, self.i, self.t, self.ts_ms = v, i, t, ts_ms  # (samples, cells); ts per sample
        self.pos = 0

    @property
    def done(self) -> bool:
        return self.pos >= self.ts_ms.size

    def next_batch(self, max_samples: int) -> ReadingBatch:
        a, b = self.pos, min(self.pos + max_samples, self.ts_ms.size)
        self.pos = b
        n_cells = len(self.cells)
        rows = b - a
        out = ReadingBatch.build(
            self.cells,
            np.tile(np.arange(n_cells, dtype=np.int32), rows),
            np.repeat(self.ts_ms[a:b], n_cells),
            self.v[a:b].reshape(-1),
            self.i[a:b].reshape(-1),
            self.t[a:b].reshape(-1),
        )
        if self.done:  # the columns are no longer needed once replayed
            self.v = self.i = self.t = np.zeros((0, n_cells))
        return out


def generate(
    rig: Rig, cycles: int, dt_s: float, acceleration: float, clock_ms: Callable[[], int]
) -> tuple[History, HistoryStats]:
    """Run ``rig`` until every cell completed ``cycles`` more cycles (or finished its protocol), sampling every
    ``dt_s``; timestamps end at ``clock_ms()`` when the run is over. Ageing runs ``acceleration`` times faster meanwhile, then is restored.
    Raises ValueError if the history would exceed ``MAX_READINGS``."""
    n = len(rig.cell_ids)
    max_samples = MAX_READINGS // n
    target = rig.cycle + cycles
    saved = rig.ageing.acceleration if rig.ageing is not None else None
    if rig.ageing is not None:
        rig.ageing.acceleration = acceleration
    cpu0 = time.thread_time()
    t0_s = rig.time_s
    chunks: list[np.ndarray] = []
    buf = np.empty((CHUNK_TICKS, 4, n))
    k = 0
    samples = 0
    try:
        while not np.all((rig.cycle >= target) | rig.finished):
            if samples >= max_samples:
                raise ValueError(
                    f"history of {cycles} cycles needs more than {MAX_READINGS} readings at {dt_s} s per sample: "
                    "fewer history_cycles or a longer history_sample_s"
                )
            rig.step(dt_s)
            m = rig.measure()
            buf[k, 0] = rig.time_s
            buf[k, 1], buf[k, 2], buf[k, 3] = m["voltage_v"], m["current_a"], m["temperature_c"]
            k += 1
            samples += 1
            if k == CHUNK_TICKS:
                chunks.append(buf)
                buf = np.empty((CHUNK_TICKS, 4, n))
                k = 0
    finally:
        if rig.ageing is not None and saved is not None:
            rig.ageing.acceleration = saved
    chunks.append(buf[:k])
    data = np.concatenate(chunks)
    end_ms = clock_ms()
    sim_s = data[:, 0, 0]
    ts_ms = end_ms - np.round((rig.time_s - sim_s) * 1000.0).astype(np.int64)
    hist = History(rig.cell_ids, data[:, 1].copy(), data[:, 2].copy(), data[:, 3].copy(), ts_ms)
    stats = HistoryStats(
        cycles=cycles,
        samples=samples,
        readings=samples * n,
        simulated_s=rig.time_s - t0_s,
        cpu_s=time.thread_time() - cpu0,
        first_ts_ms=int(ts_ms[0]) if ts_ms.size else end_ms,
        last_ts_ms=end_ms,
    )
    return hist, stats
