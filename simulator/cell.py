"""N cells of one chemistry as numpy arrays: electrode-level OCV, series resistance + two RC pairs (SOC and
temperature dependent), optional hysteresis, lumped thermal model with optional neighbour coupling.

The charge state is ``q_ah``, the lithium held by the negative electrode. The OCV is U_pos(y) - U_neg(x) with
x = q / Q_neg and y = (n_Li - q) / Q_pos, so ageing (which shrinks Q_neg, Q_pos and n_Li: ``simulator.ageing``)
reshapes the OCV and the Q(V) curve the way real cells do, instead of only scaling capacity.
"""

from __future__ import annotations

import numpy as np

from simulator import ocp
from simulator.chemistry import Chemistry

_BISECT_STEPS = 36
try:  # the compiled kernel behind np.interp, without its Python wrapper (a third of its cost at 100 cells)
    from numpy._core.multiarray import interp as _interp
except ImportError:  # pragma: no cover - older numpy
    _interp = np.interp


class CellArray:
    def __init__(
        self,
        chem: Chemistry,
        n: int,
        rng: np.random.Generator,
        capacity_ah: float | None = None,
        initial_soc: float | np.ndarray | None = 0.5,
        ambient_c: float = 25.0,
        hysteresis: bool = False,
        capacity_cv: float | None = None,
        resistance_cv: float | None = None,
        h_w_m2k: float | None = None,
        coupling_w_k: float = 0.0,
    ):
        if n < 1:
            raise ValueError(f"cells must be at least 1, got {n}")
        cap = chem.nominal_capacity_ah if capacity_ah is None else float(capacity_ah)
        if not cap > 0:
            raise ValueError(f"capacity_ah must be positive, got {capacity_ah}")
        if chem.electrodes is None:
            raise ValueError(f"chemistry {chem.name!r} has no electrode window ('electrodes'): the simulator needs it")
        self.chem = chem
        self.n = n
        self.nominal_ah = cap
        scale = cap / chem.nominal_capacity_ah  # a bigger cell of the same chemistry: lower R, more thermal mass
        var = chem.variability
        ccv = var.get("capacity_cv", 0.0) if capacity_cv is None else capacity_cv
        rcv = var.get("resistance_cv", 0.0) if resistance_cv is None else resistance_cv
        cap0 = cap * (rng.normal(1.0, ccv, n) if ccv > 0 else np.ones(n))
        self.r_cell = (rng.lognormal(0.0, rcv, n) if rcv > 0 else np.ones(n)) / scale
        e = chem.electrodes
        self.xn, self.un = ocp.tabulate(e.negative)
        self.yp, self.up = ocp.tabulate(e.positive)
        self.cap0_ah = cap0
        self.qn0 = cap0 / (e.x100 - e.x0)
        self.qp0 = cap0 / (e.y0 - e.y100)
        self.nli0 = e.x0 * self.qn0 + e.y0 * self.qp0
        self.qn, self.qp, self.nli = self.qn0.copy(), self.qp0.copy(), self.nli0.copy()
        self.q_lo = e.x0 * self.qn0
        self.q_hi = e.x100 * self.qn0
        self.refresh_window()
        soc0 = (
            rng.uniform(0.3, 0.7, n)
            if initial_soc is None
            else np.broadcast_to(np.asarray(initial_soc, dtype=float), (n,)).copy()
        )
        if np.any((soc0 < 0) | (soc0 > 1)) or not np.all(np.isfinite(soc0)):
            raise ValueError(f"initial_soc must lie within 0..1, got {np.asarray(initial_soc).tolist()}")
        self.q_ah = self.q_lo + soc0 * (self.q_hi - self.q_lo)
        self.v1 = np.zeros(n)
        self.v2 = np.zeros(n)
        self.h = np.zeros(n)
        self.hysteresis = bool(hysteresis) and chem.hysteresis_v > 0
        self.ambient_c = float(ambient_c)
        self.temp_c = np.full(n, self.ambient_c)
        self.heat_capacity_j_k = chem.heat_capacity_j_k * scale
        self.ha_w_k = (chem.h_w_m2k if h_w_m2k is None else h_w_m2k) * chem.area_m2 * scale ** (2 / 3)
        if self.ha_w_k < 0 or coupling_w_k < 0:
            raise ValueError("heat transfer coefficient and coupling must not be negative")
        self.coupling_w_k = float(coupling_w_k)
        self.r_age = np.ones(n)  # growth of R0 by ageing
        self.r_age_rc = np.ones(n)  # ... of the RC pairs (charge transfer, diffusion: they grow apart from R0)
        self.extra_heat_w = np.zeros(n)
        self._rc_dt = -1.0
        self._rc_table = np.stack([chem.r0_ohm, chem.r1_ohm, chem.tau1_s, chem.r2_ohm, chem.tau2_s], axis=1)
        self.update_rc()

    # --- open-circuit voltage -------------------------------------------------------------------------------
    def ocv_at(self, q: np.ndarray) -> np.ndarray:
        x = q / self.qn
        y = (self.nli - q) / self.qp
        return _interp(y, self.yp, self.up) - _interp(x, self.xn, self.un)

    def ocv(self) -> np.ndarray:
        v = self.ocv_at(self.q_ah)
        if self.hysteresis:
            v = v + self.chem.hysteresis_v * self.h
        return v

    def q_at_ocv(self, target_v: float) -> np.ndarray:
        """The charge q at which each cell's open-circuit voltage is target_v (vectorised bisection)."""
        lo = np.maximum(self.nli - self.qp, 0.0) + 1e-9
        hi = np.minimum(self.qn, self.nli) - 1e-9
        for _ in range(_BISECT_STEPS):
            mid = 0.5 * (lo + hi)
            above = self.ocv_at(mid) > target_v
            hi = np.where(above, mid, hi)
            lo = np.where(above, lo, mid)
        return 0.5 * (lo + hi)

    def refresh_window(self) -> None:
        """Find the charge q at v_min and v_max of the (aged) electrodes."""
        self.q_lo, self.q_hi = self.q_at_ocv(self.chem.v_min), self.q_at_ocv(self.chem.v_max)

    @property
    def capacity_ah(self) -> np.ndarray:
        """Open-circuit capacity between v_min and v_max of the cells as they are now (Ah)."""
        return self.q_hi - self.q_lo

    @property
    def soc(self) -> np.ndarray:
        return (self.q_ah - self.q_lo) / np.maximum(self.q_hi - self.q_lo, 1e-9)

    # --- resistances ----------------------------------------------------------------------------------------
    def update_rc(self) -> None:
        """Refresh R0/R1/R2/tau at the present SOC and temperature (called every few simulated seconds).

        Same numbers as ``Chemistry.rc_at``, computed with one set of interpolation weights for all five tables."""
        c = self.chem
        s = np.clip(self.soc, 0.0, 1.0)
        g = c.rc_soc
        if g.size == 1:
            vals = np.broadcast_to(self._rc_table[0], (self.n, 5))
        else:
            j = np.clip(np.searchsorted(g, s) - 1, 0, g.size - 2)
            w = np.clip((s - g[j]) / (g[j + 1] - g[j]), 0.0, 1.0)[:, None]
            vals = self._rc_table[j] * (1.0 - w) + self._rc_table[j + 1] * w
        t_k = self.temp_c + 273.15
        inv = 1.0 / t_k - 1.0 / 298.15
        f, f_rc = self.r_cell * self.r_age, self.r_cell * self.r_age_rc
        f0 = f * np.exp(c.ea_r0_j_mol / 8.314462618 * inv) if c.ea_r0_j_mol else f
        f1 = f_rc * np.exp(c.ea_rc_j_mol / 8.314462618 * inv) if c.ea_rc_j_mol else f_rc
        self.r0, self.r1, self.r2 = vals[:, 0] * f0, vals[:, 1] * f1, vals[:, 3] * f1
        self.tau1, self.tau2 = vals[:, 2], vals[:, 4]
        dq = 1e-3 * self.nominal_ah
        self.slope_v_ah = (self.ocv_at(self.q_ah + dq) - self.ocv_at(self.q_ah - dq)) / (2 * dq)
        self._rc_dt = -1.0

    def _decay(self, dt_s: float) -> None:
        if dt_s != self._rc_dt:
            self.a1 = np.exp(-dt_s / self.tau1)
            self.a2 = np.exp(-dt_s / self.tau2)
            self.g = self.r0 + self.r1 * (1 - self.a1) + self.r2 * (1 - self.a2)  # effective ohms over one step
            self._rc_dt = dt_s

    # --- control helpers ------------------------------------------------------------------------------------
    def open_loop(self, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(E, G): the terminal voltage at the end of a step of current I is about E + G*I (OCV slope from the
        last resistance refresh: fine for CC/CP limits; ``hold_voltage`` refines it for CV)."""
        self._decay(dt_s)
        e = self.ocv() + self.a1 * self.v1 + self.a2 * self.v2
        return e, self.g + self.slope_v_ah * (dt_s / 3600.0)

    def hold_voltage(
        self, v_target: np.ndarray, dt_s: float, r_extra: np.ndarray, i_min: np.ndarray, i_max: np.ndarray
    ) -> np.ndarray:
        """Current that brings the terminal voltage to v_target at the end of the step (CV): a linear solve, then
        one secant refinement of the OCV slope over the charge that current moves - stable where the OCV bends
        sharply (an electrode at the end of its range) even with steps of tens of seconds."""
        self._decay(dt_s)
        h = dt_s / 3600.0
        ocv0 = self.ocv()
        e = ocv0 + self.a1 * self.v1 + self.a2 * self.v2
        g = self.g + r_extra
        i = np.minimum(np.maximum((v_target - e) / (g + self.slope_v_ah * h), i_min), i_max)
        dq = i * h
        moved = np.abs(dq) > 1e-9
        ocv1 = self.ocv_at(self.q_ah + dq) + (self.chem.hysteresis_v * self.h if self.hysteresis else 0.0)
        slope = np.where(moved, (ocv1 - ocv0) / np.where(moved, dq, 1.0), self.slope_v_ah)
        slope = np.maximum(slope, 0.0)
        return np.minimum(np.maximum((v_target - e) / (g + slope * h), i_min), i_max)

    # --- time step ------------------------------------------------------------------------------------------
    def state(self) -> tuple[np.ndarray, ...]:
        """The dynamic state, by reference: ``advance`` replaces these arrays rather than writing into them."""
        return self.q_ah, self.v1, self.v2, self.h, self.temp_c

    def rescale(
        self, idx: np.ndarray, i_old: np.ndarray, i_new: np.ndarray, dt_s: float, before: tuple[np.ndarray, ...]
    ) -> np.ndarray:
        """Redo the last ``advance`` for cells ``idx`` with another current; return their cell voltage. Exact for
        charge and RC states (linear in current); the step's heat is left as it was (a step's worth, at most)."""
        d = i_new - i_old
        self.q_ah[idx] += d * (dt_s / 3600.0)
        self.v1[idx] += (1 - self.a1[idx]) * self.r1[idx] * d
        self.v2[idx] += (1 - self.a2[idx]) * self.r2[idx] * d
        x = self.q_ah[idx] / self.qn[idx]
        y = (self.nli[idx] - self.q_ah[idx]) / self.qp[idx]
        ocv = _interp(y, self.yp, self.up) - _interp(x, self.xn, self.un)
        if self.hysteresis:
            k = np.exp(-self.chem.hysteresis_rate * np.abs(i_new) * dt_s / (3600.0 * self.nominal_ah))
            self.h[idx] = np.sign(i_new) + (before[3][idx] - np.sign(i_new)) * k
            ocv = ocv + self.chem.hysteresis_v * self.h[idx]
        return ocv + i_new * self.r0[idx] + self.v1[idx] + self.v2[idx]

    def advance(self, current_a: np.ndarray, dt_s: float) -> np.ndarray:
        """Apply current (A, + = charge) for dt_s; return the cell voltage at the end of the step (V)."""
        self._decay(dt_s)
        i = current_a
        self.v1 = self.a1 * self.v1 + (1 - self.a1) * self.r1 * i
        self.v2 = self.a2 * self.v2 + (1 - self.a2) * self.r2 * i
        self.q_ah = self.q_ah + i * (dt_s / 3600.0)
        if self.hysteresis:
            k = np.exp(-self.chem.hysteresis_rate * np.abs(i) * dt_s / (3600.0 * self.nominal_ah))
            self.h = np.sign(i) + (self.h - np.sign(i)) * k
        ocv = self.ocv()
        v = ocv + i * self.r0 + self.v1 + self.v2
        self._thermal(i * (v - ocv) + self.extra_heat_w, dt_s)
        return v

    def _thermal(self, heat_w: np.ndarray, dt_s: float) -> None:
        """Lumped model, exact for a step with frozen neighbours: C dT/dt = Q - hA (T - Ta) - k sum(T - T_nb)."""
        t = self.temp_c
        g = self.ha_w_k
        drive = heat_w + g * self.ambient_c
        if self.coupling_w_k > 0 and self.n > 1:
            k = self.coupling_w_k
            nb_sum = np.zeros(self.n)
            nb_sum[1:] += t[:-1]
            nb_sum[:-1] += t[1:]
            nb_cnt = np.full(self.n, 2.0)
            nb_cnt[0] = nb_cnt[-1] = 1.0
            g = g + k * nb_cnt
            drive = drive + k * nb_sum
        if np.all(g <= 0):  # adiabatic
            self.temp_c = t + heat_w * dt_s / self.heat_capacity_j_k
            return
        target = drive / g
        self.temp_c = target + (t - target) * np.exp(-g * dt_s / self.heat_capacity_j_k)

    # --- ageing ---------------------------------------------------------------------------------------------
    def apply_modes(
        self,
        inc: dict[str, np.ndarray],
        r_factor: np.ndarray,
        lithiated: dict[str, float] | None = None,
        rc_factor: np.ndarray | None = None,
    ) -> None:
        """Apply degradation-mode increments, then recompute the usable window. LLI takes lithium from the negative
        electrode (SEI). LAM shrinks an electrode; ``lithiated[mode]`` (0..1) is the share of the lost material that
        held lithium at the electrode's present stoichiometry - that lithium is lost too (Birkl et al. 2017's
        LAM_li vs LAM_de). Delithiated LAM_PE would hand its share of the positive's lithium to the negative and
        *raise* the usable capacity, which real cells do not show: so chemistries lose LAM_PE lithiated.
        ``r_factor`` multiplies R0, ``rc_factor`` (default: the same) the RC pairs."""
        lith = lithiated or {}
        d_li = inc["lli"] * self.cap0_ah
        self.nli = self.nli - d_li
        self.q_ah = np.maximum(self.q_ah - d_li, 1e-6)
        d_qn = inc["lam_ne"] * self.qn0
        d_qp = inc["lam_pe"] * self.qp0
        if lith.get("lam_ne", 0.0):
            li = lith["lam_ne"] * d_qn * np.clip(self.q_ah / self.qn, 0.0, 1.0)
            self.q_ah = np.maximum(self.q_ah - li, 1e-6)
            self.nli = self.nli - li
        if lith.get("lam_pe", 0.0):
            self.nli = self.nli - lith["lam_pe"] * d_qp * np.clip((self.nli - self.q_ah) / self.qp, 0.0, 1.0)
        self.qn = self.qn - d_qn
        self.qp = self.qp - d_qp
        self.r_age = r_factor
        self.r_age_rc = r_factor if rc_factor is None else rc_factor
        self.refresh_window()

    def scale_capacity(self, mask: np.ndarray, factor: float) -> None:
        """A capacity outlier: scale electrodes and inventory of the masked cells, keeping their SOC."""
        soc = self.soc
        for name in ("qn0", "qp0", "nli0", "qn", "qp", "nli", "cap0_ah"):
            arr = getattr(self, name)
            arr[mask] *= factor
        self.refresh_window()
        self.q_ah = np.where(mask, self.q_lo + soc * (self.q_hi - self.q_lo), self.q_ah)
