"""Early cycle-life features from a cell's first 100 cycles (Severson et al. 2019 and close relatives).

Inputs are Qd(V) curves on the model's voltage grid (``agent.features.qdv``) and the per-cycle discharge
capacity. The central quantity is dQ(V) = Qd_late(V) - Qd_early(V): how the discharge curve has moved between an
early and a late cycle. Its log-variance alone predicts log cycle life with r = -0.9 on the Severson data.

A ``CycleLifeSpec`` fixes which cycles make the early and late curves. A model may combine features of several
windows (an ensemble); each dQ feature is then named with its window (``FeatureRef``, key ``name@early/half``),
the model's metadata lists them, and the twin keeps exactly the curves they need. Everything is vectorised over
cells.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

FIRST_CYCLE = 2  # Severson's Qdlin matrices start at cycle 2 (cycle 1 is a formation-like outlier)
LAST_CYCLE = 100

FEATURES: dict[str, str] = {
    # name: unit (log10 of a quantity in Ah^2 is written as "log10(Ah^2)")
    "log10_var_dq_ah2": "log10(Ah^2)",  # log10 variance over the grid of dQ(V)
    "log10_abs_min_dq_ah": "log10(Ah)",  # log10 |min dQ(V)|
    "log10_abs_mean_dq_ah": "log10(Ah)",  # log10 |mean dQ(V)|
    "log10_iqr_dq_ah": "log10(Ah)",  # log10 interquartile range of dQ(V) (Attia et al. 2021: a robust spread)
    "skew_dq": "1",  # skewness of dQ(V) over the grid
    "kurtosis_dq": "1",  # excess kurtosis of dQ(V) (not logged: it crosses zero, and log|x| explodes there)
    "qd_cycle2_ah": "Ah",  # discharge capacity at cycle 2
    "qd_max_minus_cycle2_ah": "Ah",  # largest capacity of cycles 2..100 minus cycle 2's (early capacity rise)
    "qd_cycle100_ah": "Ah",
    "qd_slope_2_100_ah_per_cycle": "Ah/cycle",  # linear fit of capacity over cycles 2..100
    "qd_intercept_2_100_ah": "Ah",
    "qd_slope_91_100_ah_per_cycle": "Ah/cycle",
    "qd_intercept_91_100_ah": "Ah",
    "qd_fade_10_100_ah": "Ah",  # capacity of cycle 100 minus that of cycle 10
}
DQ_FEATURES = frozenset(n for n in FEATURES if n.endswith("_dq") or "_dq_" in n)
"""Features of the dQ(V) curve, which depend on the window (``CycleLifeSpec``); the others use capacity only."""

VAR, IQR, MIN = "log10_var_dq_ah2", "log10_iqr_dq_ah", "log10_abs_min_dq_ah"
SKEW, KURT, QD2, RISE = "skew_dq", "kurtosis_dq", "qd_cycle2_ah", "qd_max_minus_cycle2_ah"
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    # The candidate feature sets of the cycle-life selection (cloud/cyclelife_select.py), simplest first.
    "variance": (VAR,),  # Severson's "variance" model
    "iqr": (IQR,),
    "variance_iqr": (VAR, IQR),
    "variance_min": (VAR, MIN),
    "variance_qd2": (VAR, QD2),
    "variance_rise": (VAR, RISE),
    "variance_fade": (VAR, "qd_fade_10_100_ah"),
    "variance_capacity": (VAR, QD2, RISE),
    "variance_skew_kurtosis": (VAR, SKEW, KURT),
    "dq_shape": (VAR, MIN, SKEW, KURT),
    "variance_capacity_min": (VAR, QD2, RISE, MIN),
    "discharge": (VAR, MIN, SKEW, KURT, QD2, RISE),  # Severson's "discharge" model
    "full": (  # Severson's "full" model, less what Qd(V) cannot give (charge time, temperature, resistance)
        VAR,
        MIN,
        SKEW,
        KURT,
        QD2,
        RISE,
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

    def as_dict(self) -> dict[str, int]:
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


def _moments(dq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Skewness and excess kurtosis (biased, as scipy.stats' defaults) along axis 1."""
    d = dq - dq.mean(axis=1, keepdims=True)
    d2 = d * d  # products, not float powers: 5x faster on [1000 cells x 1000 points]
    m2 = np.mean(d2, axis=1)
    m3 = np.mean(d2 * d, axis=1)
    m4 = np.mean(d2 * d2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return m3 / m2**1.5, m4 / m2**2 - 3.0


def _line(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of each row of y against x."""
    xm = x.mean()
    dx = x - xm
    slope = (y - y.mean(axis=1, keepdims=True)) @ dx / np.sum(dx**2)
    return slope, y.mean(axis=1) - slope * xm


def _dq_features(dq: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    moments: list[tuple[np.ndarray, np.ndarray]] = []

    def moment(i: int) -> np.ndarray:
        if not moments:
            moments.append(_moments(dq))
        return moments[0][i]

    fns: dict[str, Callable[[], np.ndarray]] = {
        "log10_var_dq_ah2": lambda: np.log10(np.var(dq, axis=1, ddof=1)),
        "log10_abs_min_dq_ah": lambda: np.log10(np.abs(dq.min(axis=1))),
        "log10_abs_mean_dq_ah": lambda: np.log10(np.abs(dq.mean(axis=1))),
        "log10_iqr_dq_ah": lambda: np.log10(np.subtract(*np.percentile(dq, [75, 25], axis=1))),
        "skew_dq": lambda: moment(0),
        "kurtosis_dq": lambda: moment(1),
    }
    with np.errstate(divide="ignore", invalid="ignore"):
        return {n: fns[n]() for n in names}


def _capacity_features(capacity_ah: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    cap = repair_capacity(np.atleast_2d(capacity_ah))
    if cap.shape[1] != LAST_CYCLE - FIRST_CYCLE + 1:
        raise ValueError(
            f"capacity_ah needs cycles {FIRST_CYCLE}..{LAST_CYCLE} ({LAST_CYCLE - FIRST_CYCLE + 1} "
            f"columns), got {cap.shape[1]}"
        )
    cycles = np.arange(FIRST_CYCLE, LAST_CYCLE + 1, dtype=float)
    lines: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def line(key: str) -> tuple[np.ndarray, np.ndarray]:
        if key not in lines:
            lines[key] = _line(cycles, cap) if key == "full" else _line(cycles[-10:], cap[:, -10:])
        return lines[key]

    fns: dict[str, Callable[[], np.ndarray]] = {
        "qd_cycle2_ah": lambda: cap[:, 0],
        "qd_max_minus_cycle2_ah": lambda: cap.max(axis=1) - cap[:, 0],
        "qd_cycle100_ah": lambda: cap[:, -1],
        "qd_slope_2_100_ah_per_cycle": lambda: line("full")[0],
        "qd_intercept_2_100_ah": lambda: line("full")[1],
        "qd_slope_91_100_ah_per_cycle": lambda: line("end")[0],
        "qd_intercept_91_100_ah": lambda: line("end")[1],
        "qd_fade_10_100_ah": lambda: cap[:, -1] - cap[:, 10 - FIRST_CYCLE],
    }
    return {n: fns[n]() for n in names}


def _check_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise KeyError(f"unknown cycle-life feature(s) {unknown}; known: {', '.join(FEATURES)}")


def compute(
    curve_early: np.ndarray, curve_late: np.ndarray, capacity_ah: np.ndarray, names: Sequence[str]
) -> np.ndarray:
    """Feature matrix [cells, len(names)] in the order of ``names``.

    curve_early, curve_late: [cells, grid] Qd(V) (Ah) of the early and late windows (see ``window_curves``);
    capacity_ah: [cells, 99] discharge capacity of cycles 2..100 (raw; glitches are repaired here).
    """
    _check_names(names)
    dq = np.atleast_2d(np.asarray(curve_late, dtype=float)) - np.atleast_2d(np.asarray(curve_early, dtype=float))
    values = _capacity_features(capacity_ah, [n for n in names if n not in DQ_FEATURES])
    values.update(_dq_features(dq, [n for n in names if n in DQ_FEATURES]))
    return np.column_stack([values[n] for n in names])


def window_curves(qdlin: np.ndarray, spec: CycleLifeSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From full matrices [cells, grid, cycles 2..100] (the Severson layout): early curve, late curve, capacity.

    Capacity per cycle is Qd at the lowest grid voltage, the same definition the twin uses on the edge.
    """
    q = np.asarray(qdlin, dtype=float)
    if q.ndim == 2:
        q = q[None]
    early = np.median(q[:, :, np.array(spec.early_cycles()) - FIRST_CYCLE], axis=2)
    late = np.median(q[:, :, np.array(spec.late_cycles()) - FIRST_CYCLE], axis=2)
    return early, late, q[:, -1, :]


# ---------------------------------------------------------------------------------------------- windowed features
@dataclass(frozen=True)
class FeatureRef:
    """One model input: a feature and, for a dQ(V) feature, the window its curves come from."""

    name: str
    spec: CycleLifeSpec | None = None

    def __post_init__(self) -> None:
        _check_names([self.name])
        if (self.spec is None) == (self.name in DQ_FEATURES):
            raise ValueError(f"{self.name}: a window is {'needed' if self.spec is None else 'meaningless'} here")

    @property
    def key(self) -> str:
        """``name@early/half`` for a dQ feature (e.g. ``log10_var_dq_ah2@20/2``), ``name`` otherwise."""
        return f"{self.name}@{self.spec.early_cycle}/{self.spec.half_width}" if self.spec else self.name

    @classmethod
    def parse(cls, key: str) -> FeatureRef:
        name, _, window = key.partition("@")
        if not window:
            return cls(name)
        early, _, half = window.partition("/")
        try:
            return cls(name, CycleLifeSpec(int(early), int(half)))
        except ValueError as exc:
            raise ValueError(f"bad cycle-life feature key {key!r}: {exc}") from None


def refs_for(names: Sequence[str], spec: CycleLifeSpec) -> tuple[FeatureRef, ...]:
    """The inputs of a feature set computed with one window."""
    return tuple(FeatureRef(n, spec if n in DQ_FEATURES else None) for n in names)


def windows(refs: Sequence[FeatureRef]) -> list[CycleLifeSpec]:
    """The distinct windows the inputs need, in first-use order."""
    return list(dict.fromkeys(r.spec for r in refs if r.spec is not None))


def curve_cycles(refs: Sequence[FeatureRef]) -> set[int]:
    """Cycles whose Qd(V) curves the inputs need."""
    return {c for s in windows(refs) for c in s.early_cycles() + s.late_cycles()}


def compute_refs(
    curves: Mapping[CycleLifeSpec, tuple[np.ndarray, np.ndarray]], capacity_ah: np.ndarray, refs: Sequence[FeatureRef]
) -> np.ndarray:
    """Feature matrix [cells, len(refs)]: ``curves`` maps each window to its (early, late) curves [cells, grid]."""
    values = _capacity_features(capacity_ah, [r.name for r in refs if r.spec is None])
    out: dict[str, np.ndarray] = {r.key: values[r.name] for r in refs if r.spec is None}
    for spec in windows(refs):
        if spec not in curves:
            raise KeyError(f"no curves for window {spec}")
        early, late = curves[spec]
        dq = np.atleast_2d(np.asarray(late, dtype=float)) - np.atleast_2d(np.asarray(early, dtype=float))
        mine = [r for r in refs if r.spec == spec]
        got = _dq_features(dq, [r.name for r in mine])
        out.update({r.key: got[r.name] for r in mine})
    return np.column_stack([out[r.key] for r in refs])


def qdlin_features(qdlin: np.ndarray, refs: Sequence[FeatureRef]) -> np.ndarray:
    """Feature matrix [cells, len(refs)] from full Qdlin matrices [cells, grid, cycles 2..100]."""
    q = np.asarray(qdlin, dtype=float)
    q = q[None] if q.ndim == 2 else q
    curves = {s: window_curves(q, s)[:2] for s in windows(refs)}
    return compute_refs(curves, q[:, -1, :], refs)


def curves_features(
    curves: Mapping[int, np.ndarray], capacity_ah: np.ndarray, refs: Sequence[FeatureRef]
) -> np.ndarray | None:
    """One cell's features [1, len(refs)] from the Qd(V) curves it has (cycle -> curve) and its capacities of
    cycles 2..100; each window's curve is the median of the cycles of that window that were observed. None when a
    window has no observed early or late cycle."""
    per_window = {}
    for s in windows(refs):
        early = [curves[c] for c in s.early_cycles() if c in curves]
        late = [curves[c] for c in s.late_cycles() if c in curves]
        if not early or not late:
            return None
        per_window[s] = (
            np.median(np.asarray(early, dtype=float), axis=0),
            np.median(np.asarray(late, dtype=float), axis=0),
        )
    return compute_refs(per_window, np.asarray(capacity_ah, dtype=float)[None, :], refs)
