"""Early cycle-life features from a cell's first 100 cycles (Severson et al. 2019 and close relatives).

Inputs are Qd(V) curves on the model's voltage grid (``agent.features.qdv``) and the per-cycle discharge
capacity. The central quantity is dQ(V) = Qd_late(V) - Qd_early(V): how the discharge curve has moved between an
early and a late cycle. Its log-variance alone predicts log cycle life with r = -0.9 on the Severson data.

A ``CycleLifeSpec`` fixes which cycles make the early and late curves; the trained model records its spec in
its metadata, so the twin keeps exactly the curves the model needs. Everything is vectorised over cells.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

FIRST_CYCLE = 2  # Severson's Qdlin matrices start at cycle 2 (cycle 1 is a formation-like outlier)
LAST_CYCLE = 100

FEATURES: dict[str, str] = {
    # name: unit (log10 of a quantity in Ah^2 is written as "log10(Ah^2)")
    "log10_var_dq_ah2": "log10(Ah^2)",  # log10 variance over the grid of dQ(V)
    "log10_abs_min_dq_ah": "log10(Ah)",  # log10 |min dQ(V)|
    "log10_abs_mean_dq_ah": "log10(Ah)",  # log10 |mean dQ(V)|
    "skew_dq": "1",  # skewness of dQ(V) over the grid
    "kurtosis_dq": "1",  # excess kurtosis of dQ(V) (not logged: it crosses zero, and log|x| explodes there)
    "qd_cycle2_ah": "Ah",  # discharge capacity at cycle 2
    "qd_max_minus_cycle2_ah": "Ah",  # largest capacity of cycles 2..100 minus cycle 2's (early capacity rise)
    "qd_cycle100_ah": "Ah",
    "qd_slope_2_100_ah_per_cycle": "Ah/cycle",  # linear fit of capacity over cycles 2..100
    "qd_intercept_2_100_ah": "Ah",
    "qd_slope_91_100_ah_per_cycle": "Ah/cycle",
    "qd_intercept_91_100_ah": "Ah",
}

FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "variance": ("log10_var_dq_ah2",),
    "variance_capacity": ("log10_var_dq_ah2", "qd_cycle2_ah", "qd_max_minus_cycle2_ah"),
    "discharge": (
        "log10_var_dq_ah2",
        "log10_abs_min_dq_ah",
        "skew_dq",
        "kurtosis_dq",
        "qd_cycle2_ah",
        "qd_max_minus_cycle2_ah",
    ),
    "full": (
        "log10_var_dq_ah2",
        "log10_abs_min_dq_ah",
        "skew_dq",
        "kurtosis_dq",
        "qd_cycle2_ah",
        "qd_max_minus_cycle2_ah",
        "qd_slope_2_100_ah_per_cycle",
        "qd_intercept_2_100_ah",
        "qd_slope_91_100_ah_per_cycle",
        "qd_intercept_91_100_ah",
    ),
}


@dataclass(frozen=True)
class CycleLifeSpec:
    """dQ(V) = median(Qd of cycles late-w..late+w) - median(Qd of cycles early-w..early+w); late = 100 - w.

    ``half_width`` = 0 is Severson's single-cycle dQ100-10 (early=10). A median over a few neighbouring cycles
    averages out per-cycle measurement noise without smearing the slow fade.
    """

    early_cycle: int = 10
    half_width: int = 0

    def __post_init__(self) -> None:
        if not (FIRST_CYCLE + self.half_width <= self.early_cycle < self.late_cycle):
            raise ValueError(
                f"early cycle {self.early_cycle} with half width {self.half_width} must lie in "
                f"{FIRST_CYCLE}..{self.late_cycle - 1}"
            )

    @property
    def late_cycle(self) -> int:
        return LAST_CYCLE - self.half_width

    def early_cycles(self) -> list[int]:
        return list(range(self.early_cycle - self.half_width, self.early_cycle + self.half_width + 1))

    def late_cycles(self) -> list[int]:
        return list(range(self.late_cycle - self.half_width, self.late_cycle + self.half_width + 1))

    def as_dict(self) -> dict:
        return {**asdict(self), "late_cycle": self.late_cycle, "first_cycle": FIRST_CYCLE, "last_cycle": LAST_CYCLE}


def repair_capacity(capacity_ah: np.ndarray, rel_threshold: float = 0.01) -> np.ndarray:
    """Replace single-cycle glitches (a capacity far from its 5-cycle median) by that median.

    ``capacity_ah`` is [cells, cycles]. Logged capacities sometimes carry a bad cycle (the Severson data has
    values of 30 Ah for a 1.1 Ah cell); one such value would own the max/slope features.
    """
    q = np.asarray(capacity_ah, dtype=float)
    padded = np.pad(q, ((0, 0), (2, 2)), mode="edge")
    med = np.median(np.lib.stride_tricks.sliding_window_view(padded, 5, axis=1), axis=-1)
    scale = np.nanmedian(q, axis=1, keepdims=True)
    bad = ~np.isfinite(q) | (np.abs(q - med) > rel_threshold * np.abs(scale))
    return np.where(bad, med, q)


def _moments(dq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Variance (ddof=1), skewness and excess kurtosis (biased, as scipy.stats' defaults) along axis 1."""
    d = dq - dq.mean(axis=1, keepdims=True)
    m2 = np.mean(d**2, axis=1)
    m3 = np.mean(d**3, axis=1)
    m4 = np.mean(d**4, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = m3 / m2**1.5
        kurt = m4 / m2**2 - 3.0
    return np.var(dq, axis=1, ddof=1), skew, kurt


def _line(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of each row of y against x."""
    xm = x.mean()
    dx = x - xm
    slope = (y - y.mean(axis=1, keepdims=True)) @ dx / np.sum(dx**2)
    return slope, y.mean(axis=1) - slope * xm


def compute(
    curve_early: np.ndarray, curve_late: np.ndarray, capacity_ah: np.ndarray, names: tuple[str, ...] | list[str]
) -> np.ndarray:
    """Feature matrix [cells, len(names)] in the order of ``names``.

    curve_early, curve_late: [cells, grid] Qd(V) (Ah) of the early and late windows (see ``window_curves``);
    capacity_ah: [cells, 99] discharge capacity of cycles 2..100 (raw; glitches are repaired here).
    """
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise KeyError(f"unknown cycle-life feature(s) {unknown}; known: {', '.join(FEATURES)}")
    early = np.atleast_2d(np.asarray(curve_early, dtype=float))
    late = np.atleast_2d(np.asarray(curve_late, dtype=float))
    cap = repair_capacity(np.atleast_2d(capacity_ah))
    if cap.shape[1] != LAST_CYCLE - FIRST_CYCLE + 1:
        raise ValueError(
            f"capacity_ah needs cycles {FIRST_CYCLE}..{LAST_CYCLE} ({LAST_CYCLE - FIRST_CYCLE + 1} "
            f"columns), got {cap.shape[1]}"
        )
    dq = late - early
    cycles = np.arange(FIRST_CYCLE, LAST_CYCLE + 1, dtype=float)
    moments = (
        _moments if {"skew_dq", "kurtosis_dq"} & set(names) else (lambda d: (np.var(d, axis=1, ddof=1), None, None))
    )
    cache: dict[str, object] = {}

    def get(key, fn):
        if key not in cache:
            cache[key] = fn()
        return cache[key]

    m = lambda: get("moments", lambda: moments(dq))
    full = lambda: get("full", lambda: _line(cycles, cap))
    end = lambda: get("end", lambda: _line(cycles[-10:], cap[:, -10:]))
    with np.errstate(divide="ignore"):
        fns = {
            "log10_var_dq_ah2": lambda: np.log10(m()[0]),
            "log10_abs_min_dq_ah": lambda: np.log10(np.abs(dq.min(axis=1))),
            "log10_abs_mean_dq_ah": lambda: np.log10(np.abs(dq.mean(axis=1))),
            "skew_dq": lambda: m()[1],
            "kurtosis_dq": lambda: m()[2],
            "qd_cycle2_ah": lambda: cap[:, 0],
            "qd_max_minus_cycle2_ah": lambda: cap.max(axis=1) - cap[:, 0],
            "qd_cycle100_ah": lambda: cap[:, -1],
            "qd_slope_2_100_ah_per_cycle": lambda: full()[0],
            "qd_intercept_2_100_ah": lambda: full()[1],
            "qd_slope_91_100_ah_per_cycle": lambda: end()[0],
            "qd_intercept_91_100_ah": lambda: end()[1],
        }
        values = {n: fns[n]() for n in names}
    return np.column_stack([values[n] for n in names])


def window_curves(qdlin: np.ndarray, spec: CycleLifeSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From full matrices [cells, grid, cycles 2..100] (the Severson layout): early curve, late curve, capacity.

    Capacity per cycle is Qd at the lowest grid voltage, the same definition the twin uses on the edge.
    """
    q = np.asarray(qdlin, dtype=float)
    if q.ndim == 2:
        q = q[None]
    col = lambda cycles: [c - FIRST_CYCLE for c in cycles]
    early = np.median(q[:, :, col(spec.early_cycles())], axis=2)
    late = np.median(q[:, :, col(spec.late_cycles())], axis=2)
    return early, late, q[:, -1, :]
