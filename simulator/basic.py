"""``BasicRig``: the original small rig API, now a thin wrapper over the physics-grade ``Rig``.

Kept so code written against it (the field-driver emulators) keeps working: same spec fields, same seam
(``cell_ids``, ``step(dt_s)``, ``measure()``), same views (``time_s``, ``cycle``, ``soc``, ``temp_c``,
``current_a``, ``capacity_ah``). Cells are NMC811 (LG M50 parameters) under CC-CV / rest / CC / rest, starting in
the discharge at a random SOC between 30 and 70 %, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.protocol import cccv
from simulator.rig import Rig, RigSpec

DISCHARGE_STEP = 3  # index of the CC discharge in ``cccv()``


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


class BasicRig(Rig):
    """N NMC811 cells under a repeating CC-CV / rest / CC / rest schedule."""

    def __init__(self, spec: BasicRigSpec):
        self.basic_spec = spec
        super().__init__(
            RigSpec(
                cells=spec.cells,
                chemistry="nmc811",
                capacity_ah=spec.capacity_ah,
                protocol=cccv(
                    spec.charge_c_rate,
                    spec.discharge_c_rate,
                    spec.v_max,
                    spec.v_min,
                    spec.cv_cutoff_c_rate,
                    spec.rest_s,
                ),
                start_step=DISCHARGE_STEP,
                ambient_c=spec.ambient_c,
                seed=spec.seed,
                cell_prefix=spec.cell_prefix,
                max_cycle_events=1000,
            )
        )
