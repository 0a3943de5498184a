"""Ageing as degradation modes: loss of lithium inventory (LLI) and loss of active material on each electrode
(LAM_NE, LAM_PE), driven by published calendar and cycling forms.

Each mechanism in a chemistry's ``ageing.mechanisms`` is a state trajectory y = k(stress) * x**p (x = days, EFC or
Ah), integrated as NREL BLAST-Lite does: the stress is averaged over an update interval, the current y is mapped to
its equivalent x under the new k, and x advances. The mechanism's loss is then split into modes (``modes``), and the
electrode model (``simulator.cell``) turns the modes into capacity, OCV shape and dQ/dV changes: that is why modes
and not capacity are the state here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.chemistry import R_GAS, T_REF_C, Chemistry
from simulator.plating import Plating

if TYPE_CHECKING:
    from simulator.cell import CellArray

MODES = ("lli", "lam_ne", "lam_pe")
_T_REF_K = T_REF_C + 273.15
MAX_MODE = 0.95


def _ua_blast(soc: np.ndarray) -> np.ndarray:
    """Graphite potential vs SOC used by BLAST-Lite's calendar stress (DEGRADATION_MODELS.txt, B)."""
    xa = 8.5e-3 + soc * (0.78 - 8.5e-3)
    return (
        0.6379
        + 0.5416 * np.exp(-305.5309 * xa)
        + 0.044 * np.tanh(-(xa - 0.1958) / 0.1088)
        - 0.1978 * np.tanh((xa - 1.0571) / 0.0854)
        - 0.6875 * np.tanh((xa + 0.0117) / 0.0529)
        - 0.0175 * np.tanh((xa - 0.5692) / 0.0875)
    )


@dataclass
class Stress:
    """Stress averaged over an update interval, per cell (arrays) - what the published forms take."""

    days: float  # elapsed time (d)
    efc: np.ndarray  # equivalent full cycles (discharged Ah / nominal capacity)
    ah_dis: np.ndarray  # discharged Ah
    t_k: np.ndarray  # mean temperature (K)
    soc: np.ndarray  # mean SOC
    c_dis: np.ndarray  # mean discharge C-rate while discharging
    c_chg: np.ndarray  # mean charge C-rate while charging
    efc_chg_cm: np.ndarray | None = None  # charge throughput weighted by (C-rate)**m, in EFC (fast-charge stress)
    efc_chg: np.ndarray | None = None  # charged Ah / nominal capacity (None: efc)


def _arrh(t_k: np.ndarray, ea: float) -> np.ndarray:
    return np.exp(-ea / R_GAS * (1.0 / t_k - 1.0 / _T_REF_K))


def _rate(m: dict[str, Any], s: Stress, nominal_ah: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(k, x increment, p) of one mechanism for this interval."""
    form = m["form"]
    if form == "blast_lgm50_calendar":
        b = m["b"]
        tn = s.t_k / (273.15 + 35.0)
        uan = _ua_blast(s.soc) / 0.123
        k = (
            b[0]
            + b[1] * np.exp(tn**3 * uan ** (-1 / 3))
            + b[2] * tn**3 * uan ** (-0.5)
            + b[3] * np.exp(np.sqrt(s.soc) / tn**2)
            + b[4] * np.exp(s.soc**3)
        )
        return np.maximum(k, 0.0), np.full_like(s.t_k, s.days / 1e4), m["p"]
    if form == "blast_lgm50_cycling":
        c = m["c"]
        tn = s.t_k / (273.15 + 35.0)
        k = c[0] * np.exp(c[1] * s.c_dis**3) * np.exp(c[2] * tn**3 * np.sqrt(s.c_dis))
        return k, s.efc / 1e4, m["p"]
    if form == "wang2011":
        c = np.clip(s.c_dis, m["b_c_rate"][0], m["b_c_rate"][-1])
        b = np.interp(c, m["b_c_rate"], m["b"])
        k = b * np.exp((-m["ea_j_mol"] + m["ea_per_c_rate"] * c) / (R_GAS * s.t_k)) / 100.0
        return k, s.ah_dis * m["ref_capacity_ah"] / nominal_ah, m["z"]
    if form == "arrhenius_power_time":
        k = m["k"] * _arrh(s.t_k, m["ea_j_mol"]) * np.exp(m.get("soc_coeff", 0.0) * (s.soc - 0.5))
        return k, np.full_like(s.t_k, s.days / 365.25), m["p"]
    if form == "power_efc":
        return m["k"] * _arrh(s.t_k, m.get("ea_j_mol", 0.0)), s.efc, m["p"]
    if form == "charge_rate_power":
        # damage per charged Ah grows as (C-rate / c_ref)**m: the throughput is weighted step by step, so a policy
        # that charges at 8C for 15 % of SOC counts that part at 8C, not at its average rate
        x = (s.efc_chg_cm if s.efc_chg_cm is not None else s.efc * s.c_chg ** m["m"]) / m["c_ref"] ** m["m"]
        return m["k"] * _arrh(s.t_k, m.get("ea_j_mol", 0.0)), x, m["p"]
    raise ValueError(f"unknown ageing form {form!r}")


FORMS = (
    "blast_lgm50_calendar",
    "blast_lgm50_cycling",
    "wang2011",
    "arrhenius_power_time",
    "power_efc",
    "charge_rate_power",
)


class Ageing:
    """Degradation-mode state of N cells. ``acceleration`` multiplies elapsed time and throughput (fast tests)."""

    def __init__(
        self,
        chem: Chemistry,
        n: int,
        rng: np.random.Generator,
        ageing_cv: float | None = None,
        acceleration: float = 1.0,
        overrides: dict[str, dict[str, Any]] | None = None,
    ):
        block = chem.ageing or {}
        self.mechs: list[dict[str, Any]] = [dict(m) for m in block.get("mechanisms", [])]
        plating = dict(block["plating"]) if "plating" in block else None
        for name, over in (overrides or {}).items():
            if name == "plating" and plating is not None:
                plating.update(over)
                continue
            match = [m for m in self.mechs if m.get("name") == name]
            if not match:
                raise ValueError(
                    f"ageing override {name!r}: chemistry {chem.name!r} has mechanisms "
                    f"{[m.get('name') for m in self.mechs] + (['plating'] if plating is not None else [])}"
                )
            match[0].update(over)
        for m in self.mechs:
            if m.get("form") not in FORMS:
                raise ValueError(
                    f"chemistry {chem.name!r}: ageing mechanism {m.get('name')!r} has unknown form "
                    f"{m.get('form')!r}; known: {', '.join(FORMS)}"
                )
            bad = set(m.get("modes", {})) - set(MODES)
            if bad:
                raise ValueError(f"ageing mechanism {m.get('name')!r}: unknown modes {sorted(bad)}; known: {MODES}")
        if acceleration < 0:
            raise ValueError(f"ageing acceleration must not be negative, got {acceleration}")
        self.nominal_ah = chem.nominal_capacity_ah
        self.resistance = dict(block.get("resistance", {}))
        self.lithiated = {"lam_ne": 0.0, "lam_pe": 1.0, **block.get("lam_lithiated", {})}
        cv = chem.variability.get("ageing_cv", 0.0) if ageing_cv is None else ageing_cv
        self.mult = rng.lognormal(0.0, cv, (len(self.mechs), n)) if cv > 0 else np.ones((len(self.mechs), n))
        self.y = np.zeros((len(self.mechs), n))
        self.modes = {k: np.zeros(n) for k in MODES}
        self.acceleration = float(acceleration)
        self.plating = Plating(plating, n, rng) if plating is not None else None  # the knee: simulator.plating

    def update(self, s: Stress, nominal_ah: float, cells: CellArray | None = None) -> dict[str, np.ndarray]:
        """Advance every mechanism; return the mode increments of this interval (fractions). Plating needs the
        cells' electrode state (``cells``); without it, it does not advance."""
        inc = {k: np.zeros_like(s.t_k) for k in MODES}
        if self.acceleration == 0:
            return inc
        for j, m in enumerate(self.mechs):
            k, dx, p = _rate(m, s, nominal_ah)
            k = k * self.mult[j]
            y = self.y[j]
            safe_k = np.where(k > 0, k, 1.0)
            x_eq = np.where(k > 0, (y / safe_k) ** (1.0 / p), 0.0)
            y_new = np.where(k > 0, safe_k * (x_eq + self.acceleration * dx) ** p, y)
            dy = np.maximum(y_new - y, 0.0)
            self.y[j] = y + dy
            for mode, frac in m.get("modes", {}).items():
                inc[mode] += frac * dy
        if self.plating is not None and cells is not None:
            for mode, d in self.plating.update(s, cells, self.acceleration).items():
                inc[mode] += d
        for mode in MODES:
            new = np.minimum(self.modes[mode] + inc[mode], MAX_MODE)
            inc[mode] = new - self.modes[mode]
            self.modes[mode] = new
        return inc

    def charge_rate_exponent(self) -> float | None:
        """The C-rate exponent the rig must weight charge throughput with (None: no fast-charge mechanism)."""
        ms = {float(m["m"]) for m in self.mechs if m["form"] == "charge_rate_power"}
        if len(ms) > 1:
            raise ValueError(f"fast-charge mechanisms disagree on the C-rate exponent m: {sorted(ms)}")
        return ms.pop() if ms else None

    def resistance_factor(self, prefix: str = "") -> np.ndarray:
        """Growth of R0 (``per_<mode>`` coefficients) or, with prefix "rc_", of the RC pairs (``rc_per_<mode>``,
        defaulting to R0's): a chemistry whose polarisation grows faster than its ohmic resistance says so.
        ``exponent`` (default 1: linear) bends the growth: above 1 it accelerates with the loss, as the resistance
        of cycled cells often does (the "elbow" that comes before a knee: Attia et al. 2022)."""
        r = self.resistance
        q = r.get("exponent", 1.0)
        return 1.0 + sum(r.get(f"{prefix}per_{m}", r.get(f"per_{m}", 0.0)) * self.modes[m] ** q for m in MODES)

    def apply(self, cells: CellArray, inc: dict[str, np.ndarray]) -> None:
        """Hand this interval's mode increments and the resistance growth to the cells."""
        cells.apply_modes(inc, self.resistance_factor(), self.lithiated, self.resistance_factor("rc_"))
