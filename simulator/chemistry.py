"""Cell chemistries: open-circuit voltage tables, resistances, RC pairs and thermal figures, with their sources.

One home for cell parameters: the simulator builds cells from them and the agent's twin (EKF) reads the same
files, so the twin and the simulated cell agree on what a chemistry is. Parameter files are ``params/<name>.json``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np


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

    def ocv(self, soc: np.ndarray) -> np.ndarray:
        """OCV (V) at the given SOC, linear interpolation in the table, clamped to 0..1."""
        return np.interp(np.clip(soc, 0.0, 1.0), self.ocv_soc, self.ocv_v)

    def docv_dsoc(self, soc: np.ndarray, eps: float = 1e-3) -> np.ndarray:
        s = np.clip(soc, eps, 1 - eps)
        return (self.ocv(s + eps) - self.ocv(s - eps)) / (2 * eps)

    def rc_at(self, soc: np.ndarray) -> dict[str, np.ndarray]:
        """R0, R1, tau1, R2, tau2 at the given SOC (interpolated in the SOC table, 25 degC)."""
        s = np.clip(soc, 0.0, 1.0)
        return {k: np.interp(s, self.rc_soc, getattr(self, k)) for k in ("r0_ohm", "r1_ohm", "tau1_s", "r2_ohm",
                                                                           "tau2_s")}


def available() -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in resources.files("simulator.params").iterdir()
                  if p.name.endswith(".json"))


@lru_cache(maxsize=None)
def get_chemistry(name: str) -> Chemistry:
    """Load a chemistry by name ('nmc811', 'lfp', ...); ValueError names the known ones."""
    try:
        raw = json.loads(resources.files("simulator.params").joinpath(f"{name}.json").read_text())
    except FileNotFoundError:
        raise ValueError(f"unknown chemistry {name!r}; known: {', '.join(available())}") from None
    arrays = {k: np.asarray(raw[k], dtype=float) for k in ("ocv_soc", "ocv_v", "rc_soc", "r0_ohm", "r1_ohm",
                                                             "tau1_s", "r2_ohm", "tau2_s")}
    chem = Chemistry(name=raw["name"], cell=raw["cell"], nominal_capacity_ah=float(raw["nominal_capacity_ah"]),
                     v_min=float(raw["v_min"]), v_max=float(raw["v_max"]), heat_capacity_j_k=float(
                         raw["heat_capacity_j_k"]), h_w_m2k=float(raw["h_w_m2k"]), area_m2=float(raw["area_m2"]),
                     source=raw["source"], **arrays)
    if chem.nominal_capacity_ah <= 0 or not np.all(np.diff(chem.ocv_soc) > 0):
        raise ValueError(f"chemistry {name!r}: capacity must be positive and the OCV SOC grid increasing")
    return chem
