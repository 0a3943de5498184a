"""Anomaly detection: residuals against the twin, thermal rate of rise, sibling outliers, sensor faults.

Per tick (vectorised over cells): the EKF's voltage innovation smoothed (mean -> model mismatch, offset, extra
resistance; RMS -> noise), the temperature rise rate the twin's Joule-heating and cooling model does not explain
(a self-heating cell), absolute over-temperature, a voltage reading frozen under current, missing values.
Per completed cycle: the cell against its siblings on the same driver (robust median): capacity (SOH), DC
resistance, coulombic efficiency (a soft internal short discharges the cell between charge and discharge).

Events are edge- and rate-limited per (cell, kind): one when a condition starts, then at most one per
``repeat_s`` while it lasts, so a broken cell cannot flood the events stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from agent.config import TwinAlarmConfig
from drivers.base import Event


class RateLimiter:
    def __init__(self, n: int, repeat_s: float):
        self.n = n
        self.repeat_ms = int(repeat_s * 1000)
        self.active: dict[str, np.ndarray] = {}
        self.last_ms: dict[str, np.ndarray] = {}

    def _arrays(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        if kind not in self.active:
            self.active[kind] = np.zeros(self.n, dtype=bool)
            self.last_ms[kind] = np.full(self.n, np.iinfo(np.int64).min // 2, dtype=np.int64)
        return self.active[kind], self.last_ms[kind]

    def due(
        self, kind: str, c: np.ndarray, cond: np.ndarray, ts: np.ndarray, clear: np.ndarray | None = None
    ) -> np.ndarray:
        """Cells of ``c`` that should raise an event now. ``clear`` (default: not cond) ends the condition."""
        active, last = self._arrays(kind)
        if not cond.any() and not active[c].any():  # the common case: nothing on, nothing to clear
            return cond
        clear = ~cond if clear is None else clear
        fire = cond & (~active[c] | (ts - last[c] >= self.repeat_ms))
        active[c] = np.where(cond, True, np.where(clear, False, active[c]))
        last[c] = np.where(fire, ts, last[c])
        return np.asarray(fire, dtype=bool)


def _ewma_alpha(dt: np.ndarray, tau_s: float) -> np.ndarray:
    return 1.0 - np.exp(-np.where(np.isfinite(dt), dt, 0.0) / tau_s)


class Detectors:
    def __init__(self, n: int, cfg: TwinAlarmConfig, cell_ids: tuple[str, ...], source: str):
        self.cfg = cfg
        self.cell_ids = cell_ids
        self.source = source
        self.limiter = RateLimiter(n, cfg.repeat_s)
        self.first_ts = np.full(n, -1, dtype=np.int64)
        self.res_mean = np.zeros(n)
        self.res_sq = np.zeros(n)
        self.res_n = np.zeros(n)  # EWMA weight accumulated (so a fresh filter is not trusted too early)
        self.rate_meas = np.zeros(n)
        self.rate_exp = np.zeros(n)
        self.rate_n = np.zeros(n)
        self.last_t = np.full(n, np.nan)
        self.v_same_s = np.zeros(n)
        self.missing = np.zeros(n)
        self.ambient_c = np.nan

    # ------------------------------------------------------------------ per tick
    def tick(
        self,
        c: np.ndarray,
        ts: np.ndarray,
        dt: np.ndarray,
        i: np.ndarray,
        v: np.ndarray,
        t: np.ndarray,
        innov: np.ndarray,
        last_v: np.ndarray,
        joule_w: np.ndarray,
        heat_capacity_j_k: np.ndarray,
        cooling_w_k: np.ndarray,
        rest_a: np.ndarray,
        ambient_c: float | None,
    ) -> list[Event]:
        cfg = self.cfg
        events: list[Event] = []
        new = self.first_ts[c] < 0
        self.first_ts[c] = np.where(new, ts, self.first_ts[c])
        warm = (ts - self.first_ts[c]) >= cfg.warmup_s * 1000
        gap = ~np.isfinite(dt)

        # Voltage residual: smoothed mean and RMS of the EKF innovation.
        a = _ewma_alpha(dt, cfg.residual_window_s)
        has = np.isfinite(innov)
        r = np.where(has, innov, 0.0)
        self.res_mean[c] = np.where(has, self.res_mean[c] + a * (r - self.res_mean[c]), self.res_mean[c])
        self.res_sq[c] = np.where(has, self.res_sq[c] + a * (r**2 - self.res_sq[c]), self.res_sq[c])
        self.res_n[c] = np.where(has, self.res_n[c] + a * (1.0 - self.res_n[c]), self.res_n[c])
        trusted = warm & (self.res_n[c] > 0.9)
        mean_mv = np.abs(self.res_mean[c]) * 1000
        rms_mv = np.sqrt(np.maximum(self.res_sq[c] - self.res_mean[c] ** 2, 0.0)) * 1000
        for kind, value_mv, limit_mv, unit, message in (
            (
                "alarm.voltage_residual",
                mean_mv,
                cfg.voltage_residual_mv,
                "mV",
                "measured voltage departs from the twin's prediction",
            ),
            ("alarm.voltage_noise", rms_mv, cfg.voltage_noise_mv, "mV RMS", "voltage is noisier than the twin expects"),
        ):
            cond = trusted & (value_mv > limit_mv)
            events += self._emit(kind, c, cond, ts, value_mv, limit_mv, unit, message, clear=value_mv < 0.7 * limit_mv)

        # Thermal: ambient estimate (coolest cell, falls at once, rises slowly), then unexplained rise rate.
        ok_t = np.isfinite(t)
        if ambient_c is not None:
            amb = ambient_c
        else:
            coolest = float(np.min(t[ok_t])) if ok_t.any() else np.nan
            if np.isfinite(coolest):
                step = float(np.nanmax(np.where(np.isfinite(dt), dt, 0.0), initial=0.0))
                if not np.isfinite(self.ambient_c) or coolest < self.ambient_c:
                    self.ambient_c = coolest
                else:
                    self.ambient_c += (1 - np.exp(-step / 3600.0)) * (coolest - self.ambient_c)
            amb = self.ambient_c
        prev_t = self.last_t[c]
        ok_rate = ok_t & np.isfinite(prev_t) & ~gap & (np.where(gap, 0.0, dt) > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            meas = (t - prev_t) / dt
            exp_ = (joule_w - cooling_w_k * (t - amb)) / heat_capacity_j_k
        at = _ewma_alpha(dt, cfg.thermal_window_s)
        self.rate_meas[c] = np.where(ok_rate, self.rate_meas[c] + at * (meas - self.rate_meas[c]), self.rate_meas[c])
        self.rate_exp[c] = np.where(
            ok_rate & np.isfinite(exp_), self.rate_exp[c] + at * (exp_ - self.rate_exp[c]), self.rate_exp[c]
        )
        self.rate_n[c] = np.where(ok_rate, self.rate_n[c] + at * (1.0 - self.rate_n[c]), self.rate_n[c])
        self.rate_n[c] = np.where(gap, 0.0, self.rate_n[c])
        self.last_t[c] = np.where(ok_t, t, self.last_t[c])
        excess = (self.rate_meas[c] - self.rate_exp[c]) * 60.0
        cond = (self.rate_n[c] > 0.9) & (excess > cfg.thermal_rate_c_per_min)
        events += self._emit(
            "alarm.thermal_rate",
            c,
            cond,
            ts,
            excess,
            cfg.thermal_rate_c_per_min,
            "degC/min",
            "temperature rises faster than the twin's heating model explains",
            clear=excess < 0.5 * cfg.thermal_rate_c_per_min,
        )
        hot = ok_t & (t > cfg.max_temperature_c)
        events += self._emit(
            "alarm.over_temperature",
            c,
            hot,
            ts,
            t,
            cfg.max_temperature_c,
            "degC",
            "cell temperature above the limit",
            clear=ok_t & (t < cfg.max_temperature_c - 2.0),
        )

        # Sensor stuck: a voltage reading bit-identical while current flows.
        same = np.isfinite(v) & (v == last_v) & (np.abs(i) > rest_a) & ~gap
        self.v_same_s[c] = np.where(same, self.v_same_s[c] + np.where(gap, 0.0, dt), 0.0)
        cond = self.v_same_s[c] >= cfg.stuck_s
        events += self._emit(
            "alarm.sensor_stuck",
            c,
            cond,
            ts,
            self.v_same_s[c],
            cfg.stuck_s,
            "s",
            "voltage reading frozen while current flows",
        )

        # Dropout: share of samples with a missing voltage or temperature. A cell that never had a temperature
        # (a cycler file without a temperature column) has none to miss.
        miss = (~np.isfinite(v) | (~ok_t & np.isfinite(self.last_t[c]))).astype(float)
        ad = 1.0 - np.exp(-1.0 / max(cfg.dropout_window_s, 1.0))  # per sample
        self.missing[c] += ad * (miss - self.missing[c])
        cond = self.missing[c] > cfg.dropout_fraction
        events += self._emit(
            "alarm.sensor_dropout",
            c,
            cond,
            ts,
            self.missing[c],
            cfg.dropout_fraction,
            "fraction",
            "readings missing",
            level="warning",
            clear=self.missing[c] < 0.5 * cfg.dropout_fraction,
        )
        return events

    # ------------------------------------------------------------------ per cycle, against siblings
    def cycle_checks(
        self, cells: list[int], ts: list[int], soh: np.ndarray, dcr: np.ndarray, ce: np.ndarray
    ) -> list[Event]:
        """``soh``, ``dcr``, ``ce``: each cell's latest per-cycle value ([n], NaN unknown)."""
        cfg = self.cfg
        events: list[Event] = []
        bound: Callable[[float], float]
        for cell, t in zip(cells, ts):
            others = np.arange(soh.size) != cell
            for kind, vals, bound, below, unit, what in (
                (
                    "alarm.capacity_outlier",
                    soh,
                    lambda m: m * (1 - cfg.capacity_outlier_fraction),
                    True,
                    "SOH",
                    "discharge capacity well below its sibling cells",
                ),
                (
                    "alarm.resistance_outlier",
                    dcr,
                    lambda m: m * (1 + cfg.resistance_outlier_fraction),
                    False,
                    "ohm",
                    "DC resistance well above its sibling cells",
                ),
                (
                    "alarm.coulombic_efficiency",
                    ce,
                    lambda m: m - cfg.coulombic_efficiency_drop,
                    True,
                    "1",
                    "coulombic efficiency below its sibling cells (self-discharge, e.g. a soft short)",
                ),
            ):
                sib = vals[others & np.isfinite(vals)]
                x = vals[cell]
                if sib.size < cfg.min_siblings or not np.isfinite(x):
                    continue
                med = float(np.median(sib))
                limit = float(bound(med))
                cond = np.array([bool(med > 0 and (x < limit if below else x > limit))])
                fire = self.limiter.due(kind, np.array([cell]), cond, np.array([t]))
                if fire[0]:
                    events.append(
                        self._event(
                            kind,
                            cell,
                            t,
                            float(x),
                            limit,
                            unit,
                            what,
                            extra={"siblings_median": med, "siblings": int(sib.size)},
                        )
                    )
        return events

    # ------------------------------------------------------------------ helpers
    def _emit(
        self,
        kind: str,
        c: np.ndarray,
        cond: np.ndarray,
        ts: np.ndarray,
        value: np.ndarray,
        limit: float,
        unit: str,
        what: str,
        level: str = "alarm",
        clear: np.ndarray | None = None,
    ) -> list[Event]:
        fire = self.limiter.due(kind, c, cond, ts, clear)
        if not fire.any():
            return []
        return [
            self._event(kind, int(cell), int(t), float(val), limit, unit, what, level)
            for cell, t, val in zip(c[fire], ts[fire], value[fire])
        ]

    def _event(
        self,
        kind: str,
        cell: int,
        ts: int,
        value: float,
        limit: float,
        unit: str,
        what: str,
        level: str = "alarm",
        extra: dict[str, Any] | None = None,
    ) -> Event:
        cid = self.cell_ids[cell]
        return Event(
            kind,
            f"cell {cid}: {what} ({value:.4g} {unit}, limit {limit:.4g})",
            level=level,
            source="twin",
            cell=cid,
            ts_ms=int(ts),
            data={"value": round(value, 6), "limit": limit, "unit": unit, "driver": self.source, **(extra or {})},
        )
