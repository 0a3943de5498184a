"""The twin of one group of cells (one driver's cells): arrays indexed by cell, advanced tick by tick.

A batch is split into ticks (the k-th sample of every cell in the batch), and each tick runs the EKF, the cycle
tracker and the per-tick detectors for all its cells at once. Completed cycles become summary dicts with the
models' predictions (SOH forecast with its band on every cycle, cycle life when a cell completes cycle 100).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from agent.config import TwinConfig
from agent.features import cyclelife as cl_features
from agent.features.qdv import VoltageGrid, qd_on_grid
from agent.inference import CycleLifePredictor, SohForecaster
from agent.twin.anomaly import Detectors
from agent.twin.cyclerfollow import CyclerCycles
from agent.twin.cycles import CycleTracker, FinishedCycle
from agent.twin.ekf import SocEkf
from agent.twin.model import GroupModel
from agent.twin.restore import CellState, OpenCycle
from drivers.base import Event, Origin

log = logging.getLogger("agent.twin")
N_CAP = cl_features.LAST_CYCLE - cl_features.FIRST_CYCLE + 1


def _num(x: Any, nd: int = 6) -> float | None:
    return round(float(x), nd) if x is not None and np.isfinite(x) else None


class CellGroup:
    def __init__(
        self,
        source: str,
        cell_ids: tuple[str, ...],
        model: GroupModel,
        cfg: TwinConfig,
        cycle_life: CycleLifePredictor | None,
        soh: SohForecaster | None,
    ):
        n = len(cell_ids)
        self.source, self.cell_ids, self.model, self.cfg = source, cell_ids, model, cfg
        self.ekf = SocEkf(model)
        self.tracker = CycleTracker(
            model.nominal_ah, cfg.rest_c_rate, cfg.min_cycle_discharge_fraction, cfg.qdv_max_points
        )
        self.files = CyclerCycles(self.tracker.rest_a, self.tracker.step_a, cfg.qdv_max_points)
        self.det = Detectors(n, cfg.alarms, cell_ids, source)
        self.soh_model = soh
        self.cycle_life_off = cycle_life.off_reason(model.name, model.nominal_ah) if cycle_life else "no model"
        self.cycle_life = cycle_life if self.cycle_life_off is None else None
        self.grid = self.cycle_life.grid if self.cycle_life else VoltageGrid(model.chem.v_max, model.chem.v_min, 1000)
        self.curve_cycles = self.cycle_life.curve_cycles if self.cycle_life else set()
        self.history = np.full((n, cfg.history_cycles), np.nan)  # discharge Ah, newest column = hist_cycle
        self.hist_cycle = np.zeros(n, dtype=np.int64)
        self.cap_2_100 = np.full((n, N_CAP), np.nan)
        self.curves: list[dict[int, np.ndarray]] = [{} for _ in range(n)]
        self.cycle_life_done = np.zeros(n, dtype=bool)
        self.inference_failures = 0  # model calls that raised (a new model is rolled back for them: agent/remote)
        self.last_soh, self.last_dcr, self.last_ce = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        self.first_dis = np.full(n, np.nan)  # discharge Ah of the first complete cycle seen (EKF capacity scale)
        self.eol_ah = cfg.eol_fraction * model.nominal_ah
        self.horizons = np.arange(1, cfg.forecast_cycles + 1, dtype=float)  # [k] = cycle + k + 1 (cycles.v1)

    # ------------------------------------------------------------------ restore
    def restore(self, states: dict[str, CellState], open_cycles: dict[str, OpenCycle] | None = None) -> None:
        for k, cid in enumerate(self.cell_ids):
            oc = (open_cycles or {}).get(cid)
            if oc is not None:
                self.files.restore(k, oc.key, oc.last_row, oc.rows, oc.complete)
            st = states.get(cid)
            if st is None:
                continue
            self.tracker.cycle[k] = st.last_cycle + 1  # the cycle in progress; its start was not observed
            self.tracker.start_ts[k] = st.last_ts
            for cyc in sorted(st.history):
                self._record_capacity(k, cyc, st.history[cyc])
            self.curves[k] = {
                c: np.asarray(q, dtype=np.float32) for c, q in st.curves.items() if len(q) == self.grid.points
            }
            self.cycle_life_done[k] = st.cycle_life_done
            self.last_soh[k], self.last_dcr[k], self.last_ce[k] = (
                np.nan if v is None else v for v in (st.soh, st.dcr, st.ce)
            )

    # ------------------------------------------------------------------ per batch
    def process(
        self,
        lut: np.ndarray,
        ts: np.ndarray,
        i: np.ndarray,
        v: np.ndarray,
        t: np.ndarray,
        origin: Origin | None = None,
    ) -> tuple[list[Event], list[dict[str, Any]]]:
        """Samples of this group: ``lut`` = group cell index per sample; arrays in any order. ``origin``: the rows'
        place in a cycler's file (same order): cells with the cycler's cycle numbers take its cycles."""
        by_file = (
            self.files.update(lut, ts, i, v, t, origin.key, origin.row, origin.cycle_no, origin.step_no)
            if origin is not None
            else []
        )
        order = np.lexsort((ts, lut))
        lut, ts, i, v, t = lut[order], ts[order], i[order], v[order], t[order]
        starts = np.r_[0, np.nonzero(np.diff(lut))[0] + 1]
        counts = np.diff(np.r_[starts, lut.size])
        rank = np.arange(lut.size) - np.repeat(starts, counts)
        events: list[Event] = []
        finished: list[FinishedCycle] = []
        by_rank = np.argsort(rank, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(rank))]
        for k in range(bounds.size - 1):
            s = by_rank[bounds[k] : bounds[k + 1]]
            ev, fin = self._tick(lut[s], ts[s], i[s], v[s], t[s])
            events += ev
            finished += [f for f in fin if not self.files.active[f.cell]]  # the cycler's numbers win: no doubles
        finished += by_file
        cycles = self._finish(finished) if finished else []
        if finished:
            events += self.det.cycle_checks(
                [f.cell for f in finished], [f.end_ts for f in finished], self.last_soh, self.last_dcr, self.last_ce
            )
        return events, cycles

    def _tick(
        self, c: np.ndarray, ts: np.ndarray, i: np.ndarray, v: np.ndarray, t: np.ndarray
    ) -> tuple[list[Event], list[FinishedCycle]]:
        last = self.tracker.last_ts[c]
        dt = (ts - last) / 1000.0
        gap = (last < 0) | (dt > self.cfg.max_gap_s) | (dt < 0)
        dt = np.where(gap, np.nan, dt)
        fresh = gap | ~self.ekf.ready[c]
        if fresh.any():
            self.ekf.initialise(c[fresh], i[fresh], v[fresh])
        innov = np.full(c.size, np.nan)
        run = ~fresh
        if run.any():
            innov[run] = self.ekf.step(c[run], i[run], v[run], dt[run], t[run])
            innov[run] = np.where(self.ekf.trust, innov[run], np.nan)  # steep OCV: not evidence either way
            # a prediction across a long step (samples minutes apart, as a simulated past is) is not evidence either
            innov[run] = np.where(dt[run] <= self.cfg.alarms.residual_max_step_s, innov[run], np.nan)
        soc = self.ekf.soc[c]
        r0, r1, _, r2, _ = self.model.rc(soc, c, t)
        joule = np.where(np.isfinite(i), i, 0.0) ** 2 * (r0 + r1 + r2)
        events = self.det.tick(
            c,
            ts,
            dt,
            i,
            v,
            t,
            innov,
            self.tracker.last_v[c].copy(),
            joule,
            self.model.heat_capacity_j_k[c],
            self.model.cooling_w_k[c],
            self.tracker.rest_a[c],
            self.cfg.ambient_c,
        )
        return events, self.tracker.update(c, ts, i, v, t, dt)

    # ------------------------------------------------------------------ completed cycles
    def _record_capacity(self, k: int, cycle: int, cap_ah: float) -> None:
        shift = cycle - int(self.hist_cycle[k])
        if shift <= 0 and self.hist_cycle[k] > 0:
            col = self.history.shape[1] - 1 + shift
            if col >= 0:
                self.history[k, col] = cap_ah
        else:
            shift = min(shift, self.history.shape[1])
            self.history[k] = np.roll(self.history[k], -shift)
            self.history[k, -shift:] = np.nan
            self.history[k, -1] = cap_ah
            self.hist_cycle[k] = cycle
        if cl_features.FIRST_CYCLE <= cycle <= cl_features.LAST_CYCLE:
            self.cap_2_100[k, cycle - cl_features.FIRST_CYCLE] = cap_ah

    def _finish(self, finished: list[FinishedCycle]) -> list[dict[str, Any]]:
        out = []
        for f in finished:
            k, a = f.cell, f.values
            nominal = float(self.model.nominal_ah[k])
            dis, chg = a["discharge_ah"], a["charge_ah"]
            ce = dis / chg if chg > 0.01 * nominal else np.nan
            dcr = a["dcr_sum"] / a["dcr_n"] if a["dcr_n"] else np.nan
            soh = dis / nominal
            self.last_soh[k], self.last_dcr[k], self.last_ce[k] = soh, dcr, ce
            if 0.3 * nominal < dis < 1.5 * nominal:
                # Coulomb counting follows the cell's fade: the SOC scale is the full capacity, and the discharge
                # between cut-offs is only part of it, so scale by the fade since the first cycle seen.
                if not np.isfinite(self.first_dis[k]):
                    self.first_dis[k] = dis
                self.ekf.capacity_ah[k] = nominal * dis / self.first_dis[k]
            self._record_capacity(k, f.cycle, dis)
            qd = qd_on_grid(f.discharge_v, f.discharge_q, self.grid) if f.discharge_v.size >= 10 else None
            if qd is not None and f.cycle in self.curve_cycles and not self.cycle_life_done[k]:
                self.curves[k][f.cycle] = qd.astype(np.float32)  # kept until cycle 100: 4 KB per curve
            publish_qd = qd is not None and (f.cycle in self.curve_cycles or f.cycle % self.cfg.qdv_every_cycles == 0)
            out.append(
                {
                    "cell": self.cell_ids[k],
                    "cycle": f.cycle,
                    "ts": f.end_ts,
                    "start_ts": f.start_ts,
                    "duration_s": round((f.end_ts - f.start_ts) / 1000.0, 3),
                    "charge_ah": _num(chg),
                    "discharge_ah": _num(dis),
                    "charge_wh": _num(a["charge_wh"]),
                    "discharge_wh": _num(a["discharge_wh"]),
                    "coulombic_efficiency": _num(ce),
                    "temperature_mean_c": _num(a["t_sum"] / a["t_n"] if a["t_n"] else np.nan, 3),
                    "temperature_max_c": _num(a["t_max"], 3),
                    "dc_resistance_ohm": _num(dcr),
                    "soh": _num(soh),
                    "soc_end": _num(self.ekf.soc[k], 4),
                    "qd_ah": [round(float(q), 5) for q in qd] if publish_qd and qd is not None else None,
                    "qd_grid": self.grid.as_dict() if publish_qd else None,
                }
            )
        self._predict_soh(finished, out)
        self._predict_cycle_life(finished, out)
        return out

    def _predict_soh(self, finished: list[FinishedCycle], out: list[dict[str, Any]]) -> None:
        """One batched forecast for every cell that finished a cycle: capacity with its 10-90 % band, end of life."""
        if self.soh_model is None:
            return
        idx = np.array([f.cell for f in finished])
        width = self.history.shape[1]
        cycles = (self.hist_cycle[idx, None] - (width - 1 - np.arange(width))[None, :]).astype(float)
        fc = None
        try:
            fc = self.soh_model.forecast(
                cycles, self.history[idx], self.model.nominal_ah[idx], self.horizons, self.eol_ah[idx]
            )
        except Exception as exc:  # noqa: BLE001 - a model failure costs predictions, not the cycle
            self.inference_failures += 1
            log.error("SOH inference failed: %r", exc)
        for j, (f, row) in enumerate(zip(finished, out)):
            row["model_version"] = self.soh_model.version
            row["eol_capacity_ah"] = _num(self.eol_ah[f.cell])
            if fc is None or not np.isfinite(fc.capacity_ah[j]).all():
                continue
            for key, arr in (
                ("predicted_capacity_ah", fc.capacity_ah),
                ("predicted_capacity_lower_ah", fc.lower_ah),
                ("predicted_capacity_upper_ah", fc.upper_ah),
            ):
                row[key] = [round(float(q), 5) for q in arr[j]]
            for key, vec in (
                ("predicted_eol_cycle", fc.eol_cycle),
                ("predicted_eol_cycle_lower", fc.eol_lower),
                ("predicted_eol_cycle_upper", fc.eol_upper),
            ):
                row[key] = _num(vec[j], 1) if abs(vec[j]) < 1e7 else None

    def _predict_cycle_life(self, finished: list[FinishedCycle], out: list[dict[str, Any]]) -> None:
        if self.cycle_life is None:
            return
        for f, row in zip(finished, out):
            k = f.cell
            if f.cycle < cl_features.LAST_CYCLE or self.cycle_life_done[k]:
                continue
            self.cycle_life_done[k] = True
            enough = np.isnan(self.cap_2_100[k]).mean() <= 0.2
            try:
                curves = {c: q.astype(float) for c, q in self.curves[k].items()}
                x = self.cycle_life.features_from_curves(curves, self.cap_2_100[k]) if enough else None
                if x is None:
                    row["cycle_life_note"] = "not enough of cycles 2..100 observed for the cycle-life model"
                    continue
                if not np.all(np.isfinite(x)):
                    row["cycle_life_note"] = "cycle-life features not finite (flat or missing discharge curves)"
                    continue
                life, lower, upper = self.cycle_life.predict_interval(x)
            except Exception as exc:  # noqa: BLE001 - a model failure costs the prediction, not the cycle
                self.inference_failures += 1
                log.error("cycle-life inference failed for %s: %r", self.cell_ids[k], exc)
                continue
            row["predicted_cycle_life"] = _num(float(life[0]), 1)
            if lower is not None and upper is not None:
                row["predicted_cycle_life_lower"] = _num(float(lower[0]), 1)
                row["predicted_cycle_life_upper"] = _num(float(upper[0]), 1)
            row["cycle_life_model_version"] = self.cycle_life.version
            if self.cycle_life.extrapolating(x)[0]:
                row["cycle_life_note"] = "extrapolating: a feature lies outside the model's training range"
            self.curves[k] = {}
