"""``RigSpec``: what a simulated rig is made of (cells, chemistry, protocol, faults, ageing, sensors).

Its own module so the spec can be read, built and passed around (configs, fleets, the ``simulator`` driver)
without the rig's physics; ``simulator.rig`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator.chemistry import Chemistry

DEFAULT_NOISE = {"voltage_v": 0.0005, "current_a": 0.002, "temperature_c": 0.05}
SEVERSON_GRID_V = np.linspace(3.5, 2.0, 1000)


@dataclass
class RigSpec:
    cells: int = 8
    chemistry: str | Chemistry = "nmc811"
    capacity_ah: float | None = None  # nominal capacity of each cell; None: the chemistry's
    protocol: str | list[dict[str, Any]] = "cccv"
    cell_protocols: list[Any] | None = None  # one protocol per cell (e.g. Severson policies); overrides protocol
    eol_capacity_ah: float | None = None  # a cell whose cycle discharge falls below this stops (rests)
    cycles: int | None = None  # repeat the protocol N times, then rest; None: forever
    start_step: int = 0  # protocol step each cell starts in
    ambient_c: float = 25.0
    seed: int = 0
    cell_prefix: str = "c"
    initial_soc: float | None = None  # None: uniform 0.3..0.7 per cell
    hysteresis: bool = False
    coupling_w_k: float = 0.0  # thermal conductance between neighbouring cells in a row (W/K)
    h_w_m2k: float | None = None
    ageing: bool = True
    ageing_acceleration: float = 1.0
    ageing_interval_s: float = 600.0
    ageing_overrides: dict[str, dict[str, Any]] | None = None
    variability: dict[str, float] = field(default_factory=dict)  # capacity_cv, resistance_cv, ageing_cv
    faults: list[dict[str, Any]] | None = None
    sensor_noise: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_NOISE))
    max_cycle_events: int | None = None  # bound the cycle log (the agent driver sets it)
    qv_cycles: Any = None  # None | "all" | iterable of cycle numbers whose discharge Qd(V) is kept
    qv_grid_v: Any = None  # voltage grid (descending); default 3.5..2.0 V for LFP, v_max..v_min otherwise
    protocol_dir: str | None = None  # where relative profile CSV paths are resolved
    rc_update_s: float = 30.0  # resistances follow SOC and temperature at this interval (simulated s)
