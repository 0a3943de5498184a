"""Qd(V): discharge capacity as a function of voltage on a fixed voltage grid (Severson et al. 2019's Qdlin).

A discharge is a sampled path (voltage falling, discharged Ah rising). Interpolating Ah at fixed voltages makes
curves from different cycles comparable point by point, which is what dQ(V) = Qd_b(V) - Qd_a(V) needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VoltageGrid:
    """A descending voltage grid: ``points`` values from ``v_high`` down to ``v_low`` (row 0 = v_high)."""

    v_high: float = 3.5
    v_low: float = 2.0
    points: int = 1000

    def __post_init__(self) -> None:
        if not (self.v_high > self.v_low and self.points >= 2):
            raise ValueError(f"voltage grid needs v_high > v_low and at least 2 points (got {self})")

    @property
    def volts(self) -> np.ndarray:
        return np.linspace(self.v_high, self.v_low, self.points)

    def as_dict(self) -> dict[str, float | int]:
        return {"v_high": self.v_high, "v_low": self.v_low, "points": self.points}


SEVERSON_GRID = VoltageGrid(3.5, 2.0, 1000)
"""The grid of the Severson data set (and so of the cycle-life model trained on it)."""


def qd_on_grid(voltage_v: np.ndarray, discharged_ah: np.ndarray, grid: VoltageGrid) -> np.ndarray:
    """Discharged capacity (Ah, >= 0) at each grid voltage for one discharge.

    ``voltage_v`` and ``discharged_ah`` are the samples of one discharge in time order. Voltage is made monotone
    with a running minimum (noise and relaxation wiggles would otherwise fold the curve), so Qd(V) is the
    capacity delivered by the time the voltage first fell to V. Grid voltages above the first sample get the
    first capacity; below the last sample (the discharge stopped above ``v_low``) the last capacity is held.
    """
    v = np.asarray(voltage_v, dtype=float)
    q = np.asarray(discharged_ah, dtype=float)
    ok = np.isfinite(v) & np.isfinite(q)
    v, q = v[ok], q[ok]
    if v.size == 0:
        return np.full(grid.points, np.nan)
    v_mono = np.minimum.accumulate(v)
    q_mono = np.maximum.accumulate(q)
    # np.interp needs increasing x: walk the discharge backwards (lowest voltage first). Where the running
    # minimum is flat (voltage not yet below an earlier value) keep the first sample reaching that voltage.
    first = np.r_[True, v_mono[1:] < v_mono[:-1]]
    xs, ys = v_mono[first][::-1], q_mono[first][::-1]
    return np.asarray(np.interp(grid.volts, xs, ys, left=ys[0], right=ys[-1]), dtype=float)
