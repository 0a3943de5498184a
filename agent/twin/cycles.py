"""Cycle detection and per-cycle accumulation, vectorised over the cells of a tick.

A sample's phase comes from the current's sign (above a rest threshold). A cycle ends when a discharge of at
least ``min_discharge_ah`` (contiguous) ends, so its summary and predictions come right after the discharge, and
pulses (HPPC, GITT) do not end cycles; a charge that follows discharges adding up to that much also ends one
(pulsed discharges). A cycle is thus [rest, charge, rest, discharge]. The first cycle the twin sees of a cell is
partial (it began before the agent did) and is not reported, unless the cell was first seen at rest and then
began to charge: then the twin saw the whole cycle. Per cycle: charge/discharge Ah and Wh (trapezoid integration), temperature mean/max, DC resistance
from current steps (dV/dI between consecutive samples when |dI| is a large step), and the discharge path
(V, discharged Ah) for Qd(V), kept in a bounded per-cell buffer that halves its resolution when full.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACC_FIELDS = ("charge_ah", "discharge_ah", "charge_wh", "discharge_wh", "t_sum", "t_n", "t_max", "dcr_sum", "dcr_n")


@dataclass
class FinishedCycle:
    cell: int
    cycle: int
    start_ts: int
    end_ts: int
    values: dict[str, float]
    discharge_v: np.ndarray  # discharge path for Qd(V)
    discharge_q: np.ndarray


class CycleTracker:
    def __init__(self, nominal_ah: np.ndarray, rest_c_rate: float, min_discharge_fraction: float, max_points: int):
        n = nominal_ah.size
        self.rest_a = rest_c_rate * nominal_ah
        self.step_a = 0.2 * nominal_ah  # a current change this large between samples is a step (DC resistance)
        self.min_discharge_ah = min_discharge_fraction * nominal_ah
        self.last_ts = np.full(n, -1, dtype=np.int64)
        self.last_i = np.zeros(n)
        self.last_v = np.full(n, np.nan)
        self.last_nonrest = np.zeros(n, dtype=np.int8)  # +1 charge, -1 discharge, 0 none yet
        self.seen_rest = np.zeros(n, dtype=bool)  # rest observed before any current: a first charge starts a cycle
        self.last_phase = np.zeros(n, dtype=np.int8)
        self.seg_dis_ah = np.zeros(n)  # Ah of the discharge segment in progress
        self.cycle = np.zeros(n, dtype=np.int64)  # the cycle in progress
        self.complete = np.zeros(n, dtype=bool)  # whether its start was observed
        self.start_ts = np.zeros(n, dtype=np.int64)
        self.first_ts = np.zeros(n, dtype=np.int64)  # first sample seen of each cell
        self.acc = {k: np.zeros(n) for k in ACC_FIELDS}
        self.acc["t_max"][:] = -np.inf
        self.max_points = max_points
        self.qv_v = np.zeros((n, max_points), dtype=np.float32)
        self.qv_q = np.zeros((n, max_points), dtype=np.float32)
        self.qv_count = np.zeros(n, dtype=np.int64)
        self.qv_stride = np.ones(n, dtype=np.int64)
        self.qv_seen = np.zeros(n, dtype=np.int64)

    def update(
        self, c: np.ndarray, ts: np.ndarray, i: np.ndarray, v: np.ndarray, t: np.ndarray, dt: np.ndarray
    ) -> list[FinishedCycle]:
        """One tick: ``c`` cell indices (unique), their sample values, and dt_s (NaN across a gap/first sample)."""
        ok_i = np.isfinite(i)
        self.first_ts[c] = np.where(self.first_ts[c] > 0, self.first_ts[c], ts)
        integrate = np.isfinite(dt) & ok_i
        dt0 = np.where(integrate, dt, 0.0)
        i_prev = self.last_i[c]
        v_prev = self.last_v[c]
        dq = 0.5 * (i_prev + np.where(ok_i, i, 0.0)) * dt0 / 3600.0
        pv = np.where(np.isfinite(v_prev), v_prev, v)
        de = 0.5 * (i_prev * pv + np.where(ok_i, i, 0.0) * np.where(np.isfinite(v), v, pv)) * dt0 / 3600.0
        de = np.where(np.isfinite(de), de, 0.0)
        acc = self.acc
        acc["charge_ah"][c] += np.maximum(dq, 0.0)
        acc["discharge_ah"][c] += np.maximum(-dq, 0.0)
        acc["charge_wh"][c] += np.maximum(de, 0.0)
        acc["discharge_wh"][c] += np.maximum(-de, 0.0)
        ok_t = np.isfinite(t)
        acc["t_sum"][c] += np.where(ok_t, t, 0.0)
        acc["t_n"][c] += ok_t
        acc["t_max"][c] = np.fmax(acc["t_max"][c], np.where(ok_t, t, -np.inf))
        di = i - i_prev
        step = integrate & (np.abs(di) > self.step_a[c]) & (dt0 <= 5.0) & np.isfinite(v) & np.isfinite(v_prev)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (v - v_prev) / di
        good = step & (r > 0) & (r < 1.0)
        acc["dcr_sum"][c] += np.where(good, r, 0.0)
        acc["dcr_n"][c] += good

        phase = np.where(
            ~ok_i, self.last_phase[c], np.where(i > self.rest_a[c], 1, np.where(i < -self.rest_a[c], -1, 0))
        ).astype(np.int8)
        self.seg_dis_ah[c] += np.maximum(-dq, 0.0)
        mind = self.min_discharge_ah[c]
        end_b = (self.last_phase[c] == -1) & (phase != -1) & (self.seg_dis_ah[c] >= mind)
        end_a = (phase == 1) & (self.last_nonrest[c] == -1) & (acc["discharge_ah"][c] >= mind)
        boundary = end_b | end_a
        first = self.last_nonrest[c] == 0
        seen_start = (phase == 1) & first & self.seen_rest[c]  # rest, then a charge: the whole cycle is seen
        if seen_start.any():
            s = c[seen_start]
            self.complete[s] = True
            self.cycle[s] = np.maximum(self.cycle[s], 1)
            self.start_ts[s] = np.where(self.start_ts[s] > 0, self.start_ts[s], self.first_ts[s])
        self.seen_rest[c] |= first & (phase == 0) & ok_i
        self._append_discharge(c[(phase == -1) & np.isfinite(v)], v[(phase == -1) & np.isfinite(v)])
        finished = [self._finish(int(cell), int(ts_)) for cell, ts_ in zip(c[boundary], ts[boundary])]
        self.seg_dis_ah[c] = np.where(phase == -1, self.seg_dis_ah[c], 0.0)
        self.last_phase[c] = phase
        self.last_nonrest[c] = np.where(phase != 0, phase, self.last_nonrest[c])
        self.last_ts[c] = ts
        self.last_i[c] = np.where(ok_i, i, self.last_i[c])
        self.last_v[c] = np.where(np.isfinite(v), v, self.last_v[c])
        return [f for f in finished if f is not None]

    def _append_discharge(self, c: np.ndarray, v: np.ndarray) -> None:
        if c.size == 0:
            return
        take = (self.qv_seen[c] % self.qv_stride[c]) == 0
        self.qv_seen[c] += 1
        c, v = c[take], v[take]
        pos = self.qv_count[c]
        self.qv_v[c, pos] = v
        self.qv_q[c, pos] = self.acc["discharge_ah"][c]
        self.qv_count[c] += 1
        for cell in c[self.qv_count[c] >= self.max_points]:  # rare: halve the resolution, keep the whole path
            half = self.max_points // 2
            self.qv_v[cell, :half] = self.qv_v[cell, 0 : self.max_points : 2]
            self.qv_q[cell, :half] = self.qv_q[cell, 0 : self.max_points : 2]
            self.qv_count[cell] = half
            self.qv_stride[cell] *= 2

    def _finish(self, cell: int, ts: int) -> FinishedCycle | None:
        a = {k: float(v[cell]) for k, v in self.acc.items()}
        n = int(self.qv_count[cell])
        out = None
        if self.complete[cell]:
            out = FinishedCycle(
                cell,
                int(self.cycle[cell]),
                int(self.start_ts[cell]),
                ts,
                a,
                self.qv_v[cell, :n].astype(float),
                self.qv_q[cell, :n].astype(float),
            )
        self.cycle[cell] += 1
        self.complete[cell] = True
        self.start_ts[cell] = ts
        for k, arr in self.acc.items():
            arr[cell] = -np.inf if k == "t_max" else 0.0
        self.qv_count[cell] = 0
        self.qv_stride[cell] = 1
        self.qv_seen[cell] = 0
        return out
