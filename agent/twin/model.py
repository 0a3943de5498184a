"""The cell model the twin assumes for a group of cells: chemistry tables scaled to each cell's capacity.

Parameters come from ``simulator.chemistry`` (the same files the simulator builds its cells from; the agent may
read them, the simulator never imports the agent). A cell of the same chemistry but k times the capacity has
1/k the resistance and k times the heat capacity and cooling conductance (k cells in parallel).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.chemistry import Chemistry, get_chemistry


@dataclass
class GroupModel:
    chem: Chemistry
    nominal_ah: np.ndarray  # [n] per-cell nominal capacity (Ah)

    @classmethod
    def build(cls, chemistry: str | Chemistry, nominal_ah: np.ndarray) -> "GroupModel":
        chem = get_chemistry(chemistry) if isinstance(chemistry, str) else chemistry
        return cls(chem, np.asarray(nominal_ah, dtype=float))

    def __post_init__(self) -> None:
        c = self.chem
        self.scale = self.nominal_ah / c.nominal_capacity_ah
        # OCV inverse needs a strictly increasing table (flat LFP plateaus are nudged by 1 uV per point).
        v = np.asarray(c.ocv_v, dtype=float)
        self._ocv_v_mono = np.maximum.accumulate(v) + np.arange(v.size) * 1e-6
        g = c.h_w_m2k * c.area_m2
        self.heat_capacity_j_k = c.heat_capacity_j_k * self.scale
        self.cooling_w_k = g * self.scale

    @property
    def name(self) -> str:
        return self.chem.name

    def ocv(self, soc: np.ndarray) -> np.ndarray:
        return np.interp(np.clip(soc, 0.0, 1.0), self.chem.ocv_soc, self.chem.ocv_v)

    def docv_dsoc(self, soc: np.ndarray) -> np.ndarray:
        return np.asarray(self.chem.docv_dsoc(np.asarray(soc, dtype=float)), dtype=float)

    def soc_from_ocv(self, v: np.ndarray) -> np.ndarray:
        return np.interp(v, self._ocv_v_mono, self.chem.ocv_soc)

    def rc(self, soc: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, ...]:
        """(r0, r1, tau1, r2, tau2) for cells ``idx`` at their SOC, resistances scaled to each cell's size."""
        p = self.chem.rc_at(np.asarray(soc, dtype=float))
        k = self.scale[idx]
        tau2 = np.maximum(p["tau2_s"], 1e-3)
        return p["r0_ohm"] / k, p["r1_ohm"] / k, np.maximum(p["tau1_s"], 1e-3), p["r2_ohm"] / k, tau2
