"""State-of-health features from a cell's capacity history (one discharge capacity per cycle).

The forecaster needs two numbers per cell at the forecast origin: the *trend slope* of capacity per cycle
(least squares over the whole retained history, which averages over the capacity-regeneration bumps that rests
cause) and the *level* now (the last few capacities moved along that slope to the origin and averaged, so one
bump does not set the level). Histories are [cells, T] arrays, oldest first, right-aligned: a cell with fewer
than T cycles has NaN at the front. The twin keeps exactly such an array; training builds it from CSV files.
"""

from __future__ import annotations

import numpy as np

FEATURES: dict[str, str] = {
    "level_ah": "Ah",  # capacity at the origin (smoothed along the trend)
    "slope_ah_per_cycle": "Ah/cycle",  # trend of capacity per cycle over the retained history
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)


def compute(history_ah: np.ndarray, level_window: int, min_cycles: int = 3) -> np.ndarray:
    """Feature matrix [cells, 2] = (level_ah, slope_ah_per_cycle); NaN rows for cells with < min_cycles values.

    ``history_ah`` is [cells, T] (NaN = no value; NaNs inside the history, e.g. a cycle without a valid
    capacity, are skipped). The x axis is the column index, so columns must be consecutive cycles.
    """
    h = np.atleast_2d(np.asarray(history_ah, dtype=float))
    _cells, t = h.shape
    ok = np.isfinite(h)
    n = ok.sum(axis=1)
    x = np.broadcast_to(np.arange(t, dtype=float), h.shape)
    y = np.where(ok, h, 0.0)
    xw = np.where(ok, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = xw.sum(axis=1) / n
        ym = y.sum(axis=1) / n
        dx = np.where(ok, x - xm[:, None], 0.0)
        slope = (dx * (y - ym[:, None])).sum(axis=1) / (dx**2).sum(axis=1)
        # Level: the last `level_window` valid values, each moved along the slope to the last column.
        rank_from_end = np.cumsum(ok[:, ::-1], axis=1)[:, ::-1]  # 1 = the newest valid value
        recent = ok & (rank_from_end <= level_window)
        moved = y + slope[:, None] * (t - 1 - x)
        level = np.where(recent, moved, 0.0).sum(axis=1) / recent.sum(axis=1)
    feats = np.column_stack([level, slope])
    feats[n < min_cycles] = np.nan
    return feats


def right_align(values: list[np.ndarray] | list[list[float]], width: int | None = None) -> np.ndarray:
    """Stack per-cell histories of different lengths into the [cells, T] right-aligned NaN-padded layout."""
    arrays = [np.asarray(v, dtype=float) for v in values]
    t = width or max((a.size for a in arrays), default=0)
    out = np.full((len(arrays), t), np.nan)
    for i, a in enumerate(arrays):
        a = a[-t:] if t else a[:0]
        if a.size:
            out[i, t - a.size :] = a
    return out
