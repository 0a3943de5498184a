"""Cycle summaries from the cycler's own cycle numbers, for rows read from a cycler's file (import, follow).

When a cycler writes its cycle number the twin takes it as the truth instead of detecting cycles from the
current's sign (cycles.py): a cycle is every row carrying that number, and it is complete when a row of a later
cycle follows. Charge and discharge Ah/Wh are integrated per cycle (trapezoid between consecutive rows of the
same cycle and step), vectorised with ``np.add.reduceat`` over the runs of equal cycle numbers. ``integrate`` is
shared by import (``summarise``, a whole file at once) and the live twin (``cyclerfollow``, batch by batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Runs:
    """Per-run sums over rows of equal cycle numbers (``starts``: first row of each run)."""

    starts: np.ndarray
    sums: dict[str, np.ndarray]  # cycles.ACC_FIELDS, one value per run
    dis_ah: np.ndarray  # per row: Ah discharged since the previous row (0 across a cycle or step change)


def integrate(
    cycle_no: np.ndarray,
    ts_ms: np.ndarray,
    current_a: np.ndarray,
    voltage_v: np.ndarray,
    temperature_c: np.ndarray,
    step_no: np.ndarray | None = None,
    step_a: float = np.inf,
) -> Runs:
    """Trapezoid sums per run of equal cycle numbers. With ``step_no``, nothing is integrated across a step change:
    cyclers log a step's first row at its start (its step capacity is 0), so the gap before it belongs to no step.
    ``step_a``: a current change this large within 5 s gives a DC resistance sample (dV/dI), as cycles.py does."""
    n = int(cycle_no.shape[0])
    starts = np.flatnonzero(np.r_[True, cycle_no[1:] != cycle_no[:-1]]) if n else np.zeros(0, dtype=np.int64)
    dt_h = np.r_[0.0, np.diff(ts_ms).astype(np.float64) / 3.6e6]
    i = np.nan_to_num(current_a)
    v = np.nan_to_num(voltage_v)
    same_cycle = np.r_[False, cycle_no[1:] == cycle_no[:-1]] & (dt_h > 0)
    same = same_cycle
    if step_no is not None:
        same = same & (np.r_[False, step_no[1:] == step_no[:-1]] | (step_no < 0))
    i_mid = np.r_[0.0, 0.5 * (i[1:] + i[:-1])]
    p_mid = np.r_[0.0, 0.5 * (i[1:] * v[1:] + i[:-1] * v[:-1])]
    dq = np.where(same, i_mid * dt_h, 0.0)
    de = np.where(same, p_mid * dt_h, 0.0)
    dis = np.maximum(-dq, 0.0)
    di = np.r_[0.0, np.diff(i)]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.r_[0.0, np.diff(v)] / di
    dcr = same_cycle & (np.abs(di) > step_a) & (dt_h <= 5.0 / 3600.0) & (r > 0) & (r < 1.0)
    ok_t = np.isfinite(temperature_c)
    if not n:
        return Runs(starts, {}, dis)
    sums = {
        "charge_ah": np.add.reduceat(np.maximum(dq, 0.0), starts),
        "discharge_ah": np.add.reduceat(dis, starts),
        "charge_wh": np.add.reduceat(np.maximum(de, 0.0), starts),
        "discharge_wh": np.add.reduceat(np.maximum(-de, 0.0), starts),
        "t_sum": np.add.reduceat(np.where(ok_t, temperature_c, 0.0), starts),
        "t_n": np.add.reduceat(ok_t.astype(np.float64), starts),
        "t_max": np.maximum.reduceat(np.where(ok_t, temperature_c, -np.inf), starts),
        "dcr_sum": np.add.reduceat(np.where(dcr, r, 0.0), starts),
        "dcr_n": np.add.reduceat(dcr.astype(np.float64), starts),
    }
    return Runs(starts, sums, dis)


def summarise(
    cell: str,
    cycle_no: np.ndarray,
    ts_ms: np.ndarray,
    current_a: np.ndarray,
    voltage_v: np.ndarray,
    temperature_c: np.ndarray,
    step_no: np.ndarray | None = None,
    include_last: bool = False,
) -> list[dict[str, Any]]:
    """One summary per run of rows with the same cycle number (cycles.v1 item fields, without rig and seq).

    The last run is left out (it may still be going on) unless ``include_last``; runs with no cycle number
    (negative) are left out."""
    n = int(cycle_no.shape[0])
    if n == 0:
        return []
    runs = integrate(cycle_no, ts_ms, current_a, voltage_v, temperature_c, step_no)
    starts, sums = runs.starts, runs.sums
    ends = np.r_[starts[1:], n]  # exclusive
    t_n = sums["t_n"]
    out: list[dict[str, Any]] = []
    last = len(starts) if include_last else len(starts) - 1
    for k in range(last):
        if cycle_no[starts[k]] < 0:
            continue
        start_ts, end_ts = int(ts_ms[starts[k]]), int(ts_ms[ends[k] - 1])
        charge, discharge = float(sums["charge_ah"][k]), float(sums["discharge_ah"][k])
        out.append(
            {
                "ts": end_ts,
                "cell": cell,
                "cycle": int(cycle_no[starts[k]]),
                "start_ts": start_ts,
                "duration_s": (end_ts - start_ts) / 1000.0,
                "charge_ah": charge,
                "discharge_ah": discharge,
                "charge_wh": float(sums["charge_wh"][k]),
                "discharge_wh": float(sums["discharge_wh"][k]),
                "coulombic_efficiency": discharge / charge if charge > 0 else None,
                "temperature_mean_c": float(sums["t_sum"][k] / t_n[k]) if t_n[k] else None,
                "temperature_max_c": float(sums["t_max"][k]) if t_n[k] else None,
            }
        )
    return out
