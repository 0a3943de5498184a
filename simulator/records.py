"""Per-cycle summaries and discharge Q(V) curves, recorded as cycles end (never per sample).

Summaries are what training code and dashboards want per cycle (capacity, energy, temperature, resistance,
degradation modes); Qd(V) is the discharge capacity on a fixed voltage grid, the raw material of Severson-style
ΔQ(V) features (their extraction lives in ``agent/``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

# Per cycle and cell: cell (index), cycle (1-based), start_s/end_s (simulated), charge_ah/discharge_ah and
# charge_wh/discharge_wh (what the cycler passed, cut-off crossings interpolated), temperature_max_c/_mean_c,
# capacity_ah (the cell's open-circuit capacity between v_min and v_max at the cycle's end: the truth behind the
# measured discharge_ah), r0_ohm (series resistance at 50 % SOC, 25 degC, including ageing), lli/lam_ne/lam_pe
# (degradation modes, fractions), efc (equivalent full cycles so far: discharged Ah / nominal).
SUMMARY_FIELDS = (
    "cell",
    "cycle",
    "start_s",
    "end_s",
    "charge_ah",
    "discharge_ah",
    "charge_wh",
    "discharge_wh",
    "temperature_max_c",
    "temperature_mean_c",
    "capacity_ah",
    "r0_ohm",
    "lli",
    "lam_ne",
    "lam_pe",
    "efc",
)


class CycleLog:
    """Bounded log of cycle-end events; each event holds arrays for the cells that finished a cycle then."""

    def __init__(self, max_events: int | None = None):
        self.events: deque[dict[str, np.ndarray]] = deque(maxlen=max_events)
        self.qv: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque(maxlen=max_events)  # (cell, cycle, Q)

    def add(self, event: dict[str, np.ndarray]) -> None:
        self.events.append(event)

    def columns(self) -> dict[str, np.ndarray]:
        """All summaries as columns, sorted by cell then cycle."""
        if not self.events:
            return {k: np.zeros(0) for k in SUMMARY_FIELDS}
        cols = {k: np.concatenate([e[k] for e in self.events]) for k in SUMMARY_FIELDS}
        order = np.lexsort((cols["cycle"], cols["cell"]))
        return {k: v[order] for k, v in cols.items()}

    def qv_matrix(self, n_cells: int, grid_len: int) -> dict[str, Any]:
        """Qd(V) as {'cell': idx, 'cycle': n, 'q_ah': (rows, grid)} sorted by cell then cycle."""
        if not self.qv:
            return {"cell": np.zeros(0, int), "cycle": np.zeros(0, int), "q_ah": np.zeros((0, grid_len))}
        cell = np.concatenate([c for c, _, _ in self.qv])
        cyc = np.concatenate([n for _, n, _ in self.qv])
        q = np.vstack([m for _, _, m in self.qv])
        order = np.lexsort((cyc, cell))
        return {"cell": cell[order], "cycle": cyc[order], "q_ah": q[order]}


class DischargeTrace:
    """Voltage and discharged Ah of every cell per step while recording, to turn into Qd(V) at cycle end."""

    def __init__(self, n: int, grid_v: np.ndarray):
        self.grid_v = np.asarray(grid_v, dtype=float)  # descending, like Severson's 3.5 V -> 2.0 V
        self.n = n
        self.v = np.full((1024, n), np.nan)
        self.q = np.zeros((1024, n))
        self.rows = 0
        self.base = 0  # absolute row number of buffer row 0
        self.start = np.zeros(n, dtype=np.int64)  # absolute row where each cell's cycle began

    def append(self, v: np.ndarray, q_dis: np.ndarray, discharging: np.ndarray) -> None:
        if self.rows == self.v.shape[0]:
            self._compact()
            if self.rows == self.v.shape[0]:
                self.v = np.vstack([self.v, np.full_like(self.v, np.nan)])
                self.q = np.vstack([self.q, np.zeros_like(self.q)])
        self.v[self.rows] = np.where(discharging, v, np.nan)
        self.q[self.rows] = q_dis
        self.rows += 1

    def _compact(self) -> None:
        drop = int(self.start.min() - self.base)
        if drop > 0:
            keep = self.rows - drop
            self.v[:keep] = self.v[drop : self.rows]
            self.q[:keep] = self.q[drop : self.rows]
            self.v[keep:] = np.nan
            self.rows, self.base = keep, self.base + drop

    def curves(self, cells: np.ndarray) -> np.ndarray:
        """Qd on the grid for the given cells (their cycle just ended); restarts their traces."""
        out = np.full((len(cells), self.grid_v.size), np.nan)
        for r, j in enumerate(cells):  # per cell once per cycle, not per step
            lo = int(self.start[j] - self.base)
            v, q = self.v[lo : self.rows, j], self.q[lo : self.rows, j]
            ok = np.isfinite(v)
            if ok.sum() >= 2:
                vm = np.minimum.accumulate(v[ok])
                out[r] = np.interp(self.grid_v[::-1], vm[::-1], q[ok][::-1])[::-1]
            self.start[j] = self.base + self.rows
        return out
