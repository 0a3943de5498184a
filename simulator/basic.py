"""A small vectorised rig model: enough to drive the agent end to end.

It is the seam the physics-grade simulator (ECM with two RC pairs, ageing, faults) plugs into: anything with the
``Rig`` shape below - ``cell_ids``, ``step(dt_s)``, ``measure()`` - can back the ``simulator`` driver.
One RC pair, a smooth NMC-like OCV curve, a lumped thermal model, and a CC-CV charge / rest / CC discharge / rest
schedule, all as numpy arrays over cells (no per-cell Python loop).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Phases of the default schedule.
CHARGE_CC, CHARGE_CV, REST_AFTER_CHARGE, DISCHARGE, REST_AFTER_DISCHARGE = range(5)


@dataclass(frozen=True)
class BasicRigSpec:
    cells: int = 8
    capacity_ah: float = 5.0
    charge_c_rate: float = 0.5
    discharge_c_rate: float = 1.0
    v_max: float = 4.2
    v_min: float = 2.5
    cv_cutoff_c_rate: float = 0.05
    rest_s: float = 600.0
    ambient_c: float = 25.0
    seed: int = 0
    cell_prefix: str = "c"


def ocv_nmc(soc: np.ndarray) -> np.ndarray:
    """A smooth NMC811/graphite-like open-circuit voltage (V) over SOC 0..1 (shape after Chen2020)."""
    s = np.clip(soc, 0.0, 1.0)
    return 3.0 + 1.15 * s - 0.55 * np.exp(-22.0 * s) + 0.08 * np.tanh(8 * (s - 0.6)) + 0.05 * s**4


class BasicRig:
    """N cells, one chemistry, under a repeating CC-CV / rest / CC / rest schedule."""

    def __init__(self, spec: BasicRigSpec):
        self.spec = spec
        n = spec.cells
        rng = np.random.default_rng(spec.seed)
        width = max(2, len(str(n)))
        self.cell_ids = tuple(f"{spec.cell_prefix}{i + 1:0{width}d}" for i in range(n))
        self.capacity_ah = spec.capacity_ah * rng.normal(1.0, 0.01, n)
        self.r0_ohm = 0.025 * rng.normal(1.0, 0.05, n)
        self.r1_ohm = 0.015 * rng.normal(1.0, 0.05, n)
        self.tau1_s = 40.0
        self.heat_capacity_j_k = 45.0
        self.h_w_k = 0.05
        self.soc = rng.uniform(0.3, 0.7, n)
        self.v_rc = np.zeros(n)
        self.temp_c = np.full(n, spec.ambient_c) + rng.normal(0, 0.2, n)
        self.current_a = np.zeros(n)
        self.phase = np.full(n, DISCHARGE, dtype=np.int8)
        self.phase_t_s = np.zeros(n)
        self.time_s = 0.0
        self.cycle = np.zeros(n, dtype=np.int64)
        self._noise = np.random.default_rng(spec.seed + 1)

    def _terminal_v(self, current_a: np.ndarray) -> np.ndarray:
        return ocv_nmc(self.soc) + current_a * self.r0_ohm + self.v_rc

    def step(self, dt_s: float) -> None:
        """Advance every cell by dt_s seconds (current positive = charging)."""
        s = self.spec
        cap = self.capacity_ah
        i_chg = s.charge_c_rate * cap
        i_dis = -s.discharge_c_rate * cap
        cur = np.zeros_like(self.soc)
        cur = np.where(self.phase == CHARGE_CC, i_chg, cur)
        cur = np.where(self.phase == DISCHARGE, i_dis, cur)
        # CV: the current that holds the terminal voltage at v_max, given the RC state.
        cv_i = (s.v_max - ocv_nmc(self.soc) - self.v_rc) / self.r0_ohm
        cur = np.where(self.phase == CHARGE_CV, np.clip(cv_i, 0.0, i_chg), cur)
        self.current_a = cur
        self.soc = np.clip(self.soc + cur * dt_s / 3600.0 / cap, 0.0, 1.0)
        a = np.exp(-dt_s / self.tau1_s)
        self.v_rc = self.v_rc * a + cur * self.r1_ohm * (1 - a)
        heat_w = cur**2 * (self.r0_ohm + self.r1_ohm)
        self.temp_c += dt_s * (heat_w - self.h_w_k * (self.temp_c - s.ambient_c)) / self.heat_capacity_j_k
        self.time_s += dt_s
        self.phase_t_s += dt_s
        v = self._terminal_v(cur)
        nxt = self.phase.copy()
        nxt[(self.phase == CHARGE_CC) & (v >= s.v_max)] = CHARGE_CV
        nxt[(self.phase == CHARGE_CV) & (cur <= s.cv_cutoff_c_rate * cap)] = REST_AFTER_CHARGE
        nxt[(self.phase == REST_AFTER_CHARGE) & (self.phase_t_s >= s.rest_s)] = DISCHARGE
        nxt[(self.phase == DISCHARGE) & (v <= s.v_min)] = REST_AFTER_DISCHARGE
        done = (self.phase == REST_AFTER_DISCHARGE) & (self.phase_t_s >= s.rest_s)
        nxt[done] = CHARGE_CC
        self.cycle += done
        changed = nxt != self.phase
        self.phase_t_s[changed] = 0.0
        self.phase = nxt

    def measure(self) -> dict[str, np.ndarray]:
        """Sensor view of the cells now: voltage (V), current (A), temperature (degC) with small noise."""
        n = len(self.cell_ids)
        return {
            "voltage_v": self._terminal_v(self.current_a) + self._noise.normal(0, 0.0005, n),
            "current_a": self.current_a + self._noise.normal(0, 0.002, n),
            "temperature_c": self.temp_c + self._noise.normal(0, 0.05, n),
        }
