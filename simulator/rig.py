"""A simulated rig: N cells of one chemistry on a cycler running a protocol, with faults and sensors.

This is the seam the agent driver and the protocol emulators use: ``cell_ids``, ``step(dt_s)`` (vectorised over
cells: no per-cell Python loop per step), ``measure()`` -> voltage_v, current_a (+ = charging), temperature_c as
the sensors report them (faults applied, NaN for dropouts). ``run`` drives it on either clock: as fast as possible
(data generation) or paced to the wall clock with a speed factor.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from simulator import protocol as P
from simulator.ageing import Ageing, Stress
from simulator.cell import CellArray
from simulator.chemistry import Chemistry, get_chemistry
from simulator.faults import FaultSet, parse_faults
from simulator.records import CycleLog, DischargeTrace
from simulator.spec import DEFAULT_NOISE, SEVERSON_GRID_V, RigSpec

__all__ = ["DEFAULT_NOISE", "Rig", "RigSpec"]


class Rig:
    def __init__(self, spec: RigSpec):
        self.spec = spec
        chem = spec.chemistry if isinstance(spec.chemistry, Chemistry) else get_chemistry(spec.chemistry)
        self.chem = chem
        if not isinstance(spec.cells, int) or spec.cells < 1:
            raise ValueError(f"cells must be a positive integer, got {spec.cells!r}")
        n = spec.cells
        width = max(2, len(str(n)))
        self.cell_ids = tuple(f"{spec.cell_prefix}{i + 1:0{width}d}" for i in range(n))
        rng = np.random.default_rng(spec.seed)
        var = spec.variability or {}
        unknown = set(var) - {"capacity_cv", "resistance_cv", "ageing_cv"}
        if unknown:
            raise ValueError(f"variability: unknown key(s) {sorted(unknown)}")
        self.cells = CellArray(
            chem,
            n,
            rng,
            spec.capacity_ah,
            spec.initial_soc,
            spec.ambient_c,
            spec.hysteresis,
            var.get("capacity_cv"),
            var.get("resistance_cv"),
            spec.h_w_m2k,
            spec.coupling_w_k,
        )
        self.nominal_ah = self.cells.nominal_ah
        self.ageing = (
            Ageing(chem, n, rng, var.get("ageing_cv"), spec.ageing_acceleration, spec.ageing_overrides)
            if spec.ageing
            else None
        )
        base = Path(spec.protocol_dir) if spec.protocol_dir else None
        if spec.cell_protocols is not None:
            if len(spec.cell_protocols) != n:
                raise ValueError(f"cell_protocols has {len(spec.cell_protocols)} entries for {n} cells")
            uniq: dict[str, int] = {}
            keys = [repr(p) for p in spec.cell_protocols]
            specs = []
            for key, p in zip(keys, spec.cell_protocols):
                if key not in uniq:
                    uniq[key] = len(specs)
                    specs.append(p)
            self.program, starts = P.compile_many(specs, self.nominal_ah, chem.v_min, chem.v_max, spec.cycles, base)
            first = np.array([starts[uniq[k]] for k in keys], dtype=np.int64)
        else:
            self.program = P.compile_protocol(spec.protocol, self.nominal_ah, chem.v_min, chem.v_max, spec.cycles, base)
            first = np.zeros(n, dtype=np.int64)
            n_steps = len(self.program.labels) - 1
            if not 0 <= spec.start_step < n_steps:
                raise ValueError(f"start_step {spec.start_step} outside the protocol's {n_steps} steps")
        if spec.eol_capacity_ah is not None and not spec.eol_capacity_ah > 0:
            raise ValueError(f"eol_capacity_ah must be positive, got {spec.eol_capacity_ah}")
        self.faultset = FaultSet(parse_faults(spec.faults, self.cell_ids), n, np.random.default_rng(spec.seed + 2))
        self._noise_rng = np.random.default_rng(spec.seed + 1)
        bad = set(spec.sensor_noise) - set(DEFAULT_NOISE)
        if bad:
            raise ValueError(f"sensor_noise: unknown field(s) {sorted(bad)}")
        self.k = first + (spec.start_step if spec.cell_protocols is None else 0)
        self.finished = np.zeros(n, dtype=bool)
        self.t_step = np.zeros(n)
        self.soc_counter = self.cells.soc * self.cells.capacity_ah / self.nominal_ah
        self.cycle = np.zeros(n, dtype=np.int64)
        self.time_s = 0.0
        self.current_a = np.zeros(n)
        self.voltage_v = self.cells.ocv()
        self._i_short = np.zeros(n)
        self._r_contact = np.zeros(n)
        self._g_short = np.zeros(n)
        # Cumulative integrals (never reset): Ah/Wh in and out, time charging/discharging, temperature and charge.
        self.cum = {
            k: np.zeros(n) for k in ("ah_chg", "ah_dis", "wh_chg", "wh_dis", "t_chg", "t_dis", "temp", "q", "chg_cm")
        }
        self._chg_m = self.ageing.charge_rate_exponent() if self.ageing is not None else None
        self._cycle_mark = {k: v.copy() for k, v in self.cum.items()}
        self._cycle_start_s = np.zeros(n)
        self._cycle_tmax = self.cells.temp_c.copy()
        self._age_mark = {k: v.copy() for k, v in self.cum.items()}
        self._age_t = 0.0
        self._rc_t = 0.0
        self.log = CycleLog(spec.max_cycle_events)
        self._qv_all = spec.qv_cycles == "all"
        self._qv_set = set() if spec.qv_cycles in (None, "all") else {int(c) for c in spec.qv_cycles}
        self.trace = None
        if spec.qv_cycles is not None:
            grid = (
                spec.qv_grid_v
                if spec.qv_grid_v is not None
                else (SEVERSON_GRID_V if chem.name.startswith("lfp") else np.linspace(chem.v_max, chem.v_min, 500))
            )
            self.trace = DischargeTrace(n, grid)
            self.last_qv = np.full((n, self.trace.grid_v.size), np.nan)  # latest Qd(V) per cell (end of life)
            self.last_qv_cycle = np.zeros(n, dtype=np.int64)
        self._physics_faults()

    # --- the seam -------------------------------------------------------------------------------------------
    def step(self, dt_s: float) -> None:
        """Advance every cell by dt_s seconds of simulated time."""
        if not dt_s > 0:
            raise ValueError(f"dt_s must be positive, got {dt_s}")
        c = self.cells
        row = self.program.table[self.k]
        kind = row[:, P.C_KIND]
        cur = row[:, P.C_AMPS].copy()
        is_cv = kind == P.CV
        if is_cv.any():
            imax, up = row[:, P.C_IMAX], row[:, P.C_DIR] > 0
            i_cv = c.hold_voltage(
                row[:, P.C_VOLT], dt_s, self._r_contact, np.where(up, 0.0, -imax), np.where(up, imax, 0.0)
            )
            cur = np.where(is_cv, i_cv, cur)
        is_cp = kind == P.CP
        if is_cp.any():
            e, g = c.open_loop(dt_s)
            g = g + self._r_contact
            w = row[:, P.C_WATT]
            disc = np.maximum(e * e + 4.0 * g * w, 0.0)  # beyond the cell's maximum power: its maximum
            cur = np.where(is_cp, (-e + np.sqrt(disc)) / (2.0 * g), cur)
        if self.program.profiles and (kind == P.PROFILE).any():
            cur = self._profile_current(row, kind, cur)
        if self.faultset.physics:
            self._physics_faults()
        v_prev = self.voltage_v
        state = c.state()  # references, not copies: advance() replaces the arrays
        v = self._advance_cells(cur, dt_s)
        # A CC/CP/profile step whose voltage limit falls inside this step: scale the cell's current so the step
        # ends at the limit (the charge a cycler would have passed up to its cut-off), then end the step. Without
        # this, coarse steps (10-30 s at fast rates) overshoot into an electrode's end of range.
        lim_hi, lim_lo = row[:, P.C_VHI], row[:, P.C_VLO]
        at_limit = (v >= lim_hi) | (v <= lim_lo)
        if at_limit.any():
            crossed = at_limit & ~is_cv & (kind != P.REST) & (v_prev < lim_hi) & (v_prev > lim_lo)
            idx = np.flatnonzero(crossed)
            if idx.size:
                vi, vp = v[idx], v_prev[idx]
                target = np.where(vi >= lim_hi[idx], lim_hi[idx], lim_lo[idx])
                f = np.clip((target - vp) / (vi - vp), 0.0, 1.0)
                i_old = cur[idx]
                cur = cur.copy()
                cur[idx] = i_old * f
                v = v.copy()
                v[idx] = c.rescale(idx, i_old, cur[idx], dt_s, state) + cur[idx] * self._r_contact[idx]
        self.voltage_v = v
        self.current_a = cur
        if self.faultset.physics:
            self._i_short = self._i_short_next
        self.time_s += dt_s
        self._accumulate(cur, v, dt_s)
        self.t_step += dt_s
        self.soc_counter += cur * (dt_s / 3600.0 / self.nominal_ah)
        done = (
            at_limit
            | (self.t_step >= row[:, P.C_DUR])
            | (self.soc_counter >= row[:, P.C_SOCHI])
            | (self.soc_counter <= row[:, P.C_SOCLO])
            | (is_cv & (np.abs(cur) <= row[:, P.C_ICUT]))
        )
        if done.any():
            self._advance_steps(done, row, cur)
        if self.trace is not None and (cur < 0).any():
            self.trace.append(v, self.cum["ah_dis"] - self._cycle_mark["ah_dis"], cur < 0)
        if self.time_s - self._rc_t >= self.spec.rc_update_s:
            self._rc_t = self.time_s
            c.update_rc()
        if self.ageing is not None and self.time_s - self._age_t >= self.spec.ageing_interval_s:
            self._age()

    def measure(self) -> dict[str, np.ndarray]:
        """Sensor view now: noise per sensor, then sensor faults (offset, stuck, dropout -> NaN)."""
        n = self.cells.n
        sn = self.spec.sensor_noise
        rng = self._noise_rng
        m = {
            "voltage_v": self.voltage_v + rng.normal(0.0, sn.get("voltage_v", 0.0), n),
            "current_a": self.current_a + rng.normal(0.0, sn.get("current_a", 0.0), n),
            "temperature_c": self.cells.temp_c + rng.normal(0.0, sn.get("temperature_c", 0.0), n),
        }
        if self.faultset.sensor:
            m = self.faultset.apply_sensors(self.time_s, m)
        return m

    # --- convenience views ----------------------------------------------------------------------------------
    @property
    def soc(self) -> np.ndarray:
        return self.cells.soc

    @property
    def temp_c(self) -> np.ndarray:
        return self.cells.temp_c

    @property
    def capacity_ah(self) -> np.ndarray:
        return self.cells.capacity_ah

    def state(self) -> dict[str, np.ndarray]:
        """True (noise-free) state per cell, for tests and datasets."""
        a = self.ageing
        z = np.zeros(self.cells.n)
        return {
            "voltage_v": self.voltage_v,
            "current_a": self.current_a,
            "temperature_c": self.cells.temp_c,
            "soc": self.cells.soc,
            "capacity_ah": self.cells.capacity_ah,
            "step": self.k.copy(),
            "cycle": self.cycle.copy(),
            "lli": a.modes["lli"] if a else z,
            "lam_ne": a.modes["lam_ne"] if a else z,
            "lam_pe": a.modes["lam_pe"] if a else z,
        }

    def run(
        self,
        duration_s: float,
        dt_s: float = 1.0,
        paced: bool = False,
        speed: float = 1.0,
        every: Callable[[Rig], Any] | None = None,
        until_cycles: int | None = None,
    ) -> None:
        """Step for duration_s simulated seconds: as fast as possible, or paced to the wall clock at ``speed``
        simulated seconds per wall second. ``until_cycles`` stops early once every cell finished that many."""
        if paced and not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        t0_wall, t0_sim = time.monotonic(), self.time_s
        steps = round(duration_s / dt_s)
        for _ in range(steps):
            self.step(dt_s)
            if every is not None:
                every(self)
            if until_cycles is not None and np.all((self.cycle >= until_cycles) | self.finished):
                break
            if paced:
                ahead = (self.time_s - t0_sim) / speed - (time.monotonic() - t0_wall)
                if ahead > 0:
                    time.sleep(ahead)

    # --- internals ------------------------------------------------------------------------------------------
    def _profile_current(self, row: np.ndarray, kind: np.ndarray, cur: np.ndarray) -> np.ndarray:
        pid = row[:, P.C_PROF]
        for j, prof in enumerate(self.program.profiles):  # a loop over profiles, not cells
            mask = (kind == P.PROFILE) & (pid == j)
            if not mask.any():
                continue
            t = self.t_step[mask]
            if prof.loop:
                t = np.mod(t, prof.duration_s)
            val = np.interp(t, prof.time_s, prof.value)
            cur[mask] = val / np.maximum(self.voltage_v[mask], 0.5) if prof.power else val
        return cur

    def _physics_faults(self) -> None:
        rc, g, heat, starting = self.faultset.physics_at(self.time_s)
        self._r_contact, self._g_short = rc, g
        self._fault_heat_w = heat + self.voltage_v**2 * g
        self.cells.extra_heat_w = self._fault_heat_w
        for f in starting:
            self.cells.scale_capacity(f.mask, f.p["factor"])

    def _accumulate(self, cur: np.ndarray, v: np.ndarray, dt_s: float) -> None:
        cu = self.cum
        h = dt_s / 3600.0
        chg = np.maximum(cur, 0.0)
        dis = np.maximum(-cur, 0.0)
        cu["ah_chg"] += chg * h
        if self._chg_m is not None:
            cu["chg_cm"] += chg * (chg / self.nominal_ah) ** self._chg_m * h
        cu["ah_dis"] += dis * h
        cu["wh_chg"] += chg * v * h
        cu["wh_dis"] += dis * v * h
        cu["t_chg"] += (cur > 0) * dt_s
        cu["t_dis"] += (cur < 0) * dt_s
        t = self.cells.temp_c
        cu["temp"] += t * dt_s
        cu["q"] += self.cells.q_ah * dt_s
        np.maximum(self._cycle_tmax, t, out=self._cycle_tmax)

    def _advance_cells(self, cur: np.ndarray, dt_s: float) -> np.ndarray:
        """Advance the cells under the cycler current ``cur``; return the terminal voltage."""
        c = self.cells
        if not self.faultset.physics:
            return c.advance(cur, dt_s)
        # heat from the faults: a growing contact resistance warms the cell through its tab
        c.extra_heat_w = self._fault_heat_w + cur * cur * self._r_contact
        v_cell = c.advance(cur - self._i_short, dt_s)  # an internal short drains the cell unseen
        self._i_short_next = v_cell * self._g_short
        return v_cell + cur * self._r_contact

    def _advance_steps(self, done: np.ndarray, row: np.ndarray, cur: np.ndarray) -> None:
        by_limit = done & (self.t_step < row[:, P.C_DUR]) & (cur < 0)
        self.soc_counter[by_limit] = 0.0  # a discharge that ended on a limit: the cycler calls the cell empty
        ends = done & (row[:, P.C_CYCLE_END] == 1)
        self.k = np.where(done, row[:, P.C_NEXT].astype(np.int64), self.k)
        self.t_step[done] = 0.0
        if ends.any():
            self.cycle[ends] += 1
            self._record_cycles(np.flatnonzero(ends))
            finished = np.zeros_like(ends)
            if self.program.cycles is not None:
                finished |= ends & (self.cycle >= self.program.cycles)
            if self.spec.eol_capacity_ah is not None:
                last = self.log.events[-1]  # the cycles that just ended
                below = np.zeros_like(ends)
                below[last["cell"]] = last["discharge_ah"] < self.spec.eol_capacity_ah
                finished |= ends & below
            self.k[finished] = len(self.program.labels) - 1
            self.finished |= finished

    def _record_cycles(self, idx: np.ndarray) -> None:
        cu, mk = self.cum, self._cycle_mark
        dur = np.maximum(self.time_s - self._cycle_start_s[idx], 1e-9)
        a = self.ageing
        rc = self.chem.rc_at(np.full(idx.size, 0.5))
        ev = {
            "cell": idx.astype(np.int64),
            "cycle": self.cycle[idx].copy(),
            "start_s": self._cycle_start_s[idx],
            "end_s": np.full(idx.size, self.time_s),
            "charge_ah": cu["ah_chg"][idx] - mk["ah_chg"][idx],
            "discharge_ah": cu["ah_dis"][idx] - mk["ah_dis"][idx],
            "charge_wh": cu["wh_chg"][idx] - mk["wh_chg"][idx],
            "discharge_wh": cu["wh_dis"][idx] - mk["wh_dis"][idx],
            "temperature_max_c": self._cycle_tmax[idx].copy(),
            "temperature_mean_c": (cu["temp"][idx] - mk["temp"][idx]) / dur,
            "capacity_ah": self.cells.capacity_ah[idx],
            "r0_ohm": rc["r0_ohm"] * self.cells.r_cell[idx] * self.cells.r_age[idx],
            "lli": a.modes["lli"][idx].copy() if a else np.zeros(idx.size),
            "lam_ne": a.modes["lam_ne"][idx].copy() if a else np.zeros(idx.size),
            "lam_pe": a.modes["lam_pe"][idx].copy() if a else np.zeros(idx.size),
            "efc": cu["ah_dis"][idx] / self.nominal_ah,
        }
        self.log.add(ev)
        if self.trace is not None:
            cyc = self.cycle[idx]
            want = np.ones(idx.size, bool) if self._qv_all else np.isin(cyc, list(self._qv_set))
            curves = self.trace.curves(idx)
            ok = np.isfinite(curves).any(axis=1)
            self.last_qv[idx[ok]] = curves[ok]
            self.last_qv_cycle[idx[ok]] = cyc[ok]
            if want.any():
                self.log.qv.append((idx[want], cyc[want], curves[want]))
        for k in cu:
            mk[k][idx] = cu[k][idx]
        self._cycle_start_s[idx] = self.time_s
        self._cycle_tmax[idx] = self.cells.temp_c[idx]

    def _age(self) -> None:
        span = self.time_s - self._age_t
        cu, mk = self.cum, self._age_mark
        d = {k: cu[k] - mk[k] for k in cu}
        c = self.cells
        q_mean = d["q"] / span
        soc = np.clip((q_mean - c.q_lo) / np.maximum(c.q_hi - c.q_lo, 1e-9), 0.0, 1.0)  # a dead cell: no window
        stress = Stress(
            days=span / 86400.0,
            efc=d["ah_dis"] / self.nominal_ah,
            ah_dis=d["ah_dis"],
            t_k=d["temp"] / span + 273.15,
            soc=soc,
            c_dis=np.where(d["t_dis"] > 0, d["ah_dis"] * 3600.0 / np.maximum(d["t_dis"], 1e-9), 0.0) / self.nominal_ah,
            c_chg=np.where(d["t_chg"] > 0, d["ah_chg"] * 3600.0 / np.maximum(d["t_chg"], 1e-9), 0.0) / self.nominal_ah,
            efc_chg_cm=d["chg_cm"] / self.nominal_ah,
            efc_chg=d["ah_chg"] / self.nominal_ah,
        )
        inc = self.ageing.update(stress, self.nominal_ah, c)
        self.ageing.apply(c, inc)
        c.update_rc()
        self._age_t = self.time_s
        self._age_mark = {k: v.copy() for k, v in cu.items()}
