"""Cell chemistries: open-circuit voltage tables, resistances, RC pairs and thermal figures, with their sources.

One home for cell parameters: the simulator builds cells from them and the agent's twin (EKF) reads the same
files, so the twin and the simulated cell agree on what a chemistry is. Parameter files are ``params/<name>.json``;
each says in ``source``/``provenance`` which values are published, model-derived, fitted here or placeholders.

Temperature: resistances follow Arrhenius, R(T) = R(25 C) * exp(Ea/R_gas * (1/T - 1/T_ref)); OCV gets an
entropic term dOCV/dT(SOC) * (T - T_ref) where the file gives one. Every ``temperature_c`` argument defaults to
25 degC, so callers written before temperature dependence (``ocv(soc)``, ``rc_at(soc)``) see the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

R_GAS = 8.314462618
T_REF_C = 25.0
_RC_KEYS = ("r0_ohm", "r1_ohm", "tau1_s", "r2_ohm", "tau2_s")


@dataclass(frozen=True)
class Electrodes:
    """Half-cell potentials and the stoichiometry window at 0 % / 100 % SOC of a fresh cell (x: negative, y: positive)."""

    negative: str
    positive: str
    x0: float
    x100: float
    y0: float
    y100: float


@dataclass(frozen=True)
class Chemistry:
    name: str
    cell: str  # the commercial cell the parameters describe
    nominal_capacity_ah: float
    v_min: float
    v_max: float
    ocv_soc: np.ndarray  # SOC grid 0..1, increasing
    ocv_v: np.ndarray  # OCV at 25 degC on that grid (V)
    rc_soc: np.ndarray  # SOC grid of the resistance tables
    r0_ohm: np.ndarray
    r1_ohm: np.ndarray
    tau1_s: np.ndarray
    r2_ohm: np.ndarray
    tau2_s: np.ndarray
    heat_capacity_j_k: float
    h_w_m2k: float
    area_m2: float
    source: str
    ea_r0_j_mol: float = 0.0  # Arrhenius activation energy of the series resistance
    ea_rc_j_mol: float = 0.0  # ... of the RC-pair resistances (charge transfer, diffusion)
    entropic_soc: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0]))
    entropic_v_k: np.ndarray = field(default_factory=lambda: np.zeros(2))  # dOCV/dT (V/K)
    hysteresis_v: float = 0.0  # half-width of the OCV hysteresis band (V); 0 = none
    hysteresis_rate: float = 0.0  # how fast the band is crossed, per fraction of capacity passed (Plett's gamma)
    electrodes: Electrodes | None = None
    ageing: dict[str, Any] = field(default_factory=dict)
    variability: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)

    def arrhenius(self, temperature_c: Any, ea_j_mol: float) -> np.ndarray:
        """Factor multiplying a 25 degC resistance at temperature_c (>1 when colder)."""
        t_k = np.asarray(temperature_c, dtype=float) + 273.15
        return np.exp(ea_j_mol / R_GAS * (1.0 / t_k - 1.0 / (T_REF_C + 273.15)))

    def ocv(self, soc: Any, temperature_c: Any = T_REF_C) -> np.ndarray:
        """OCV (V) at the given SOC (table, linear interpolation, clamped to 0..1) and temperature (entropic term)."""
        s = np.clip(soc, 0.0, 1.0)
        v = np.interp(s, self.ocv_soc, self.ocv_v)
        if np.any(np.asarray(temperature_c) != T_REF_C):
            v = v + np.interp(s, self.entropic_soc, self.entropic_v_k) * (np.asarray(temperature_c) - T_REF_C)
        return v

    def ocv_hysteresis(self, soc: Any, h: Any, temperature_c: Any = T_REF_C) -> np.ndarray:
        """OCV with the hysteresis state h in -1..1 (+1 after charging, -1 after discharging)."""
        return self.ocv(soc, temperature_c) + self.hysteresis_v * np.asarray(h)

    def docv_dsoc(self, soc: Any, eps: float = 1e-3, temperature_c: Any = T_REF_C) -> np.ndarray:
        s = np.clip(soc, eps, 1 - eps)
        return (self.ocv(s + eps, temperature_c) - self.ocv(s - eps, temperature_c)) / (2 * eps)

    def rc_at(self, soc: Any, temperature_c: Any = T_REF_C) -> dict[str, np.ndarray]:
        """R0, R1, tau1, R2, tau2 at the given SOC (interpolated in the SOC table) and temperature (Arrhenius)."""
        s = np.clip(soc, 0.0, 1.0)
        out = {k: np.interp(s, self.rc_soc, getattr(self, k)) for k in _RC_KEYS}
        if np.any(np.asarray(temperature_c) != T_REF_C):
            f0 = self.arrhenius(temperature_c, self.ea_r0_j_mol)
            f1 = self.arrhenius(temperature_c, self.ea_rc_j_mol)
            out["r0_ohm"] = out["r0_ohm"] * f0
            out["r1_ohm"] = out["r1_ohm"] * f1
            out["r2_ohm"] = out["r2_ohm"] * f1
        return out


def available() -> list[str]:
    return sorted(
        p.name.removesuffix(".json") for p in resources.files("simulator.params").iterdir() if p.name.endswith(".json")
    )


def _arr(raw: dict, key: str, name: str, default: Any = None) -> np.ndarray:
    if key not in raw:
        if default is None:
            raise ValueError(f"chemistry {name!r}: missing {key!r}")
        return np.asarray(default, dtype=float)
    a = np.asarray(raw[key], dtype=float).reshape(-1)
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"chemistry {name!r}: {key!r} must be a non-empty list of finite numbers")
    return a


def chemistry_from_dict(raw: dict[str, Any], name: str = "") -> Chemistry:
    """Build and check a chemistry; physically impossible values are refused with a message naming them."""
    name = raw.get("name", name)
    arrays = {k: _arr(raw, k, name) for k in ("ocv_soc", "ocv_v", "rc_soc", *_RC_KEYS)}
    ent_soc = _arr(raw, "entropic_soc", name, [0.0, 1.0])
    ent_v = _arr(raw, "entropic_v_k", name, np.zeros(ent_soc.size))
    el = raw.get("electrodes")
    try:
        chem = Chemistry(
            name=name,
            cell=raw["cell"],
            nominal_capacity_ah=float(raw["nominal_capacity_ah"]),
            v_min=float(raw["v_min"]),
            v_max=float(raw["v_max"]),
            heat_capacity_j_k=float(raw["heat_capacity_j_k"]),
            h_w_m2k=float(raw["h_w_m2k"]),
            area_m2=float(raw["area_m2"]),
            source=raw["source"],
            ea_r0_j_mol=float(raw.get("ea_r0_j_mol", 0.0)),
            ea_rc_j_mol=float(raw.get("ea_rc_j_mol", 0.0)),
            entropic_soc=ent_soc,
            entropic_v_k=ent_v,
            hysteresis_v=float(raw.get("hysteresis_v", 0.0)),
            hysteresis_rate=float(raw.get("hysteresis_rate", 0.0)),
            electrodes=Electrodes(**el) if el else None,
            ageing=dict(raw.get("ageing", {})),
            variability={k: float(v) for k, v in raw.get("variability", {}).items()},
            provenance=dict(raw.get("provenance", {})),
            **arrays,
        )
    except KeyError as exc:
        raise ValueError(f"chemistry {name!r}: missing {exc.args[0]!r}") from None
    except TypeError as exc:
        raise ValueError(f"chemistry {name!r}: {exc}") from None
    _check(chem)
    return chem


def _check(c: Chemistry) -> None:
    def bad(what: str) -> None:
        raise ValueError(f"chemistry {c.name!r}: {what}")

    if not c.nominal_capacity_ah > 0:
        bad(f"nominal_capacity_ah must be positive, got {c.nominal_capacity_ah}")
    if not 0 < c.v_min < c.v_max:
        bad(f"need 0 < v_min < v_max, got v_min={c.v_min}, v_max={c.v_max}")
    for grid in ("ocv_soc", "rc_soc", "entropic_soc"):
        g = getattr(c, grid)
        if g.min() < 0 or g.max() > 1:
            bad(f"{grid} must lie within 0..1 (SOC), got {g.min()}..{g.max()}")
        if g.size > 1 and not np.all(np.diff(g) > 0):
            bad(f"{grid} must be strictly increasing")
    if c.ocv_v.size != c.ocv_soc.size or not np.all(np.diff(c.ocv_v) > 0):
        bad("ocv_v must have one value per ocv_soc point and increase with SOC")
    for k in _RC_KEYS:
        a = getattr(c, k)
        if a.size != c.rc_soc.size:
            bad(f"{k} must have one value per rc_soc point")
        if not np.all(a > 0):
            bad(f"{k} must be positive, got {a.tolist()}")
    for k in ("heat_capacity_j_k", "h_w_m2k", "area_m2"):
        if not getattr(c, k) > 0:
            bad(f"{k} must be positive, got {getattr(c, k)}")
    if c.hysteresis_v < 0 or c.hysteresis_rate < 0:
        bad("hysteresis_v and hysteresis_rate must not be negative")
    e = c.electrodes
    if e is not None and (
        not all(0 <= v <= 1 for v in (e.x0, e.x100, e.y0, e.y100)) or not (e.x100 > e.x0 and e.y0 > e.y100)
    ):
        bad("electrode stoichiometries must lie in 0..1 with x100 > x0 and y0 > y100")


@cache
def get_chemistry(name: str) -> Chemistry:
    """Load a chemistry by name ('nmc811', 'lfp', 'lco', ...); ValueError names the known ones."""
    try:
        raw = json.loads(resources.files("simulator.params").joinpath(f"{name}.json").read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise ValueError(f"unknown chemistry {name!r}; known: {', '.join(available())}") from None
    return chemistry_from_dict(raw, name)
