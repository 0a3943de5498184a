"""The cell model the twin assumes for a group of cells: chemistry tables scaled to each cell's capacity.

Parameters come from ``simulator.chemistry`` (the same files the simulator builds its cells from; the agent may
read them, the simulator never imports the agent). A cell of the same chemistry but k times the capacity has
1/k the resistance and k times the heat capacity and cooling conductance (k cells in parallel). Chemistries whose
tables depend on temperature (Arrhenius resistances, entropic OCV) are evaluated at each cell's measured
temperature; without one (or with a NaN reading) at the tables' 25 degC.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.chemistry import Chemistry, get_chemistry


@dataclass
class GroupModel:
    chem: Chemistry
    nominal_ah: np.ndarray  # [n] per-cell nominal capacity (Ah)

    @classmethod
    def build(cls, chemistry: str | Chemistry, nominal_ah: np.ndarray) -> GroupModel:
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
        self._thermal = "temperature_c" in inspect.signature(c.rc_at).parameters
        # OCV slope above which the voltage says little about model health (a 1% SOC error is tens of mV):
        # three times the table's median slope. Residual alarms ignore samples there (ends of the SOC range).
        slopes = np.diff(c.ocv_v) / np.diff(c.ocv_soc)
        self.steep_v_per_soc = 3.0 * float(np.median(np.abs(slopes)))

    @property
    def name(self) -> str:
        return self.chem.name

    def _kw(self, temperature_c: np.ndarray | None) -> dict[str, Any]:
        if not self._thermal or temperature_c is None:
            return {}
        t = np.asarray(temperature_c, dtype=float)
        return {"temperature_c": np.where(np.isfinite(t), t, 25.0)}

    def ocv(self, soc: np.ndarray, temperature_c: np.ndarray | None = None) -> np.ndarray:
        kw = self._kw(temperature_c)
        if kw:
            return np.asarray(self.chem.ocv(np.asarray(soc, dtype=float), **kw), dtype=float)
        return np.asarray(np.interp(np.clip(soc, 0.0, 1.0), self.chem.ocv_soc, self.chem.ocv_v), dtype=float)

    def docv_dsoc(self, soc: np.ndarray, temperature_c: np.ndarray | None = None) -> np.ndarray:
        return np.asarray(self.chem.docv_dsoc(np.asarray(soc, dtype=float), **self._kw(temperature_c)), dtype=float)

    def soc_from_ocv(self, v: np.ndarray) -> np.ndarray:
        return np.asarray(np.interp(v, self._ocv_v_mono, self.chem.ocv_soc), dtype=float)

    def rc(self, soc: np.ndarray, idx: np.ndarray, temperature_c: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """(r0, r1, tau1, r2, tau2) for cells ``idx`` at their SOC (and temperature), scaled to each cell's size."""
        p = self.chem.rc_at(np.asarray(soc, dtype=float), **self._kw(temperature_c))
        k = self.scale[idx]
        tau2 = np.maximum(p["tau2_s"], 1e-3)
        return p["r0_ohm"] / k, p["r1_ohm"] / k, np.maximum(p["tau1_s"], 1e-3), p["r2_ohm"] / k, tau2
