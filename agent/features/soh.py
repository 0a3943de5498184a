"""Capacity histories as the SOH forecaster reads them: cleaned, condensed, one code path for training and the edge.

A history is a pair of [cells, T] arrays, cycle number and discharge capacity (NaN = no value), in any column order
with gaps anywhere: the twin's per-cycle ring buffer, or a lab's sparse reference checkpoints. ``prepare`` turns it
into at most ``max_points`` points per cell, oldest first and right-aligned (NaN padding at the front):

1. repeated cycle numbers are combined (mean): a checkpoint measured twice is one checkpoint;
2. outliers are flagged by a robust filter and dropped: a point is compared with what its neighbours predict (linear
   interpolation between the two neighbours, linear extrapolation from the two on either side; the median of the
   three), and rejected when it lies further than ``OUTLIER_SIGMAS`` robust standard deviations (1.4826 x median
   absolute residual of the cell) *and* further than ``OUTLIER_FRACTION`` of the cell's median capacity. The worst
   point is removed first and the test repeated, so one outlier does not hide or condemn its neighbours;
3. long histories are condensed to bin means over equal spans of cycles (the forecaster's cost and weighting then do
   not depend on how densely a cell was measured, and per-cycle noise such as capacity regeneration after rests is
   averaged).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

OUTLIER_SIGMAS = 6.0
OUTLIER_FRACTION = 0.10  # of the median capacity: regeneration spikes after rests (NASA B0006: 7 %) are data
OUTLIER_ROUNDS = 4  # at most this many points rejected per cell and call
MIN_POINTS = 3


@dataclass(frozen=True)
class Prepared:
    """Condensed, cleaned histories: [cells, P] right-aligned, NaN-padded; ``outliers`` = points dropped per cell.

    Forecasts count their horizons from ``last_cycle``, not from the last condensed point (a bin's mean cycle)."""

    cycle: np.ndarray
    capacity_ah: np.ndarray
    outliers: np.ndarray
    last_cycle: np.ndarray  # per cell: the latest cycle measured (before condensing), NaN if none

    @property
    def valid(self) -> np.ndarray:
        return np.asarray(np.isfinite(self.capacity_ah))

    @property
    def n_points(self) -> np.ndarray:
        return np.asarray(self.valid.sum(axis=1))


def _compact(cycle: np.ndarray, cap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid points sorted by cycle and moved to the right end of each row (NaN in front)."""
    ok = np.isfinite(cycle) & np.isfinite(cap)
    key = np.where(ok, cycle, -np.inf)
    order = np.argsort(key, axis=1, kind="stable")
    c = np.take_along_axis(np.where(ok, cycle, np.nan), order, axis=1)
    q = np.take_along_axis(np.where(ok, cap, np.nan), order, axis=1)
    return c, q


def _combine_repeats(cycle: np.ndarray, cap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the capacities that share a cycle number (rows compacted, sorted by cycle)."""
    same = np.zeros_like(cap, dtype=bool)
    same[:, 1:] = np.isfinite(cap[:, 1:]) & (cycle[:, 1:] == cycle[:, :-1])
    if not same.any():
        return cycle, cap
    run_start = ~same
    run_id = np.cumsum(run_start, axis=1) - 1  # per row: index of the run each column belongs to
    rows = np.broadcast_to(np.arange(cap.shape[0])[:, None], cap.shape)
    ok = np.isfinite(cap)
    total = np.zeros(cap.shape)
    count = np.zeros(cap.shape)
    np.add.at(total, (rows[ok], run_id[ok]), cap[ok])
    np.add.at(count, (rows[ok], run_id[ok]), 1.0)
    mean = total / np.where(count > 0, count, 1.0)
    out = np.where(run_start & ok, np.take_along_axis(mean, run_id, axis=1), np.nan)
    return _compact(np.where(np.isfinite(out), cycle, np.nan), out)


def condense(cycle: np.ndarray, cap: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows with more than ``max_points`` valid points become the means over ``max_points`` equal cycle spans."""
    cycle, cap = _compact(cycle, cap)
    n = np.isfinite(cap).sum(axis=1)
    if cycle.shape[1] <= max_points:
        return cycle, cap
    out_c = np.full((cap.shape[0], max_points), np.nan)
    out_q = np.full((cap.shape[0], max_points), np.nan)
    short = n <= max_points
    out_c[short] = cycle[short, -max_points:]
    out_q[short] = cap[short, -max_points:]
    long_rows = np.nonzero(~short)[0]
    if long_rows.size:
        c, q = cycle[long_rows], cap[long_rows]
        ok = np.isfinite(q)
        lo, hi = np.nanmin(c, axis=1), np.nanmax(c, axis=1)
        span = np.maximum(hi - lo, 1e-9)
        rel = (np.where(ok, c, lo[:, None]) - lo[:, None]) / span[:, None]
        b = np.clip((rel * max_points).astype(np.int64), 0, max_points - 1)
        rows = np.broadcast_to(np.arange(long_rows.size)[:, None], c.shape)
        cnt = np.zeros((long_rows.size, max_points))
        sc = np.zeros_like(cnt)
        sq = np.zeros_like(cnt)
        np.add.at(cnt, (rows[ok], b[ok]), 1.0)
        np.add.at(sc, (rows[ok], b[ok]), c[ok])
        np.add.at(sq, (rows[ok], b[ok]), q[ok])
        with np.errstate(invalid="ignore", divide="ignore"):
            out_c[long_rows] = np.where(cnt > 0, sc / cnt, np.nan)
            out_q[long_rows] = np.where(cnt > 0, sq / cnt, np.nan)
    return _compact(out_c, out_q)


def _residuals(cycle: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Each point minus the median of what its neighbours predict (rows compacted; NaN where no neighbours)."""
    pad = np.full((cap.shape[0], 2), np.nan)
    c = np.concatenate([pad, cycle, pad], axis=1)
    q = np.concatenate([pad, cap, pad], axis=1)
    t = cycle
    m2, m1, p1, p2 = (slice(2 + k, 2 + k + cap.shape[1]) for k in (-2, -1, 1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        interp = q[:, m1] + (q[:, p1] - q[:, m1]) * (t - c[:, m1]) / (c[:, p1] - c[:, m1])
        right = q[:, p1] + (q[:, p2] - q[:, p1]) * (t - c[:, p1]) / (c[:, p2] - c[:, p1])
        left = q[:, m1] + (q[:, m1] - q[:, m2]) * (t - c[:, m1]) / (c[:, m1] - c[:, m2])
    cands = np.sort(np.stack([interp, right, left]), axis=0)  # NaN sorts last
    n = np.isfinite(cands).sum(axis=0)
    ref = np.where(n == 3, cands[1], np.where(n == 2, 0.5 * (cands[0] + cands[1]), np.where(n == 1, cands[0], np.nan)))
    return cap - ref


def flag_outliers(cycle: np.ndarray, cap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cycle, capacity with outliers set to NaN and rows re-compacted, outliers per row)."""
    cycle, cap = _compact(cycle, cap)
    dropped = np.zeros(cap.shape[0], dtype=np.int64)
    for _ in range(OUTLIER_ROUNDS):
        r = _residuals(cycle, cap)
        absr = np.abs(r)
        with warnings.catch_warnings():  # rows without points: NaN, handled below
            warnings.simplefilter("ignore", RuntimeWarning)
            scale = 1.4826 * np.nanmedian(absr, axis=1)
            level = np.nanmedian(cap, axis=1)
        scale = np.where(np.isfinite(scale), scale, np.inf)
        limit = np.maximum(OUTLIER_SIGMAS * scale, OUTLIER_FRACTION * np.abs(level))
        score = np.where(np.isfinite(absr), absr - limit[:, None], -np.inf)
        worst = np.argmax(score, axis=1)
        bad = np.take_along_axis(score, worst[:, None], axis=1)[:, 0] > 0
        bad &= np.isfinite(cap).sum(axis=1) > MIN_POINTS
        if not bad.any():
            break
        rows = np.nonzero(bad)[0]
        cap = cap.copy()
        cap[rows, worst[rows]] = np.nan
        dropped[rows] += 1
        cycle, cap = _compact(cycle, cap)
    return cycle, cap, dropped


def prepare(cycle: np.ndarray, capacity_ah: np.ndarray, max_points: int) -> Prepared:
    """Combine repeats, drop outliers, condense to at most ``max_points`` points (module docstring)."""
    c = np.atleast_2d(np.asarray(cycle, dtype=float))
    q = np.atleast_2d(np.asarray(capacity_ah, dtype=float))
    if c.shape != q.shape:
        raise ValueError(f"cycle {c.shape} and capacity {q.shape} arrays differ in shape")
    q = np.where(q > 0, q, np.nan)  # a capacity of zero or below is no measurement
    c, q = _combine_repeats(*_compact(c, q))
    last = np.nanmax(np.where(np.isfinite(q), c, np.nan), axis=1, initial=-np.inf)
    c, q, dropped = flag_outliers(c, q)
    c, q = condense(c, q, max_points)
    return Prepared(c, q, dropped, np.where(np.isfinite(last), last, np.nan))
