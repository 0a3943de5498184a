"""Twin test fixtures: simulated runs computed once per session (they are the expensive part)."""

from __future__ import annotations

import pytest

from agent.config import TwinConfig
from agent.twin.processor import TwinProcessor
from tests.twin import rigdata

HOUR = 3600.0
FAULT_CELLS = {  # cell -> the alarm kinds its fault must raise
    "c01": {"alarm.voltage_noise"},
    "c02": {"alarm.sensor_stuck"},
    "c03": {"alarm.voltage_residual"},
    "c05": {"alarm.coulombic_efficiency"},
    "c06": {"alarm.thermal_rate", "alarm.over_temperature"},
    "c07": {"alarm.capacity_outlier"},
    "c08": {"alarm.resistance_outlier"},
    "c09": {"alarm.sensor_dropout"},
}
HEALTHY_CELLS = {"c04", "c10", "c11", "c12"}
ONSET_S = {"c01": 1 * HOUR, "c02": 2 * HOUR, "c03": 1.5 * HOUR, "c06": 4 * HOUR, "c09": 1 * HOUR}


# The simulator's fault kinds (simulator/faults.py), one per cell.
FAULT_SPECS = [
    {"kind": "sensor_noise", "cell": "c01", "field": "voltage_v", "sigma": 0.05, "start_s": ONSET_S["c01"]},
    {"kind": "sensor_stuck", "cell": "c02", "field": "voltage_v", "start_s": ONSET_S["c02"]},
    {"kind": "sensor_offset", "cell": "c03", "field": "voltage_v", "offset": 0.08, "start_s": ONSET_S["c03"]},
    {"kind": "internal_short", "cell": "c05", "ohm": 50.0},
    {"kind": "runaway_precursor", "cell": "c06", "w": 0.1, "doubling_s": 900.0, "start_s": ONSET_S["c06"]},
    {"kind": "capacity_outlier", "cell": "c07", "factor": 0.85},
    {"kind": "contact_resistance", "cell": "c08", "ohm": 0.03},
    {"kind": "sensor_dropout", "cell": "c09", "field": "temperature_c", "probability": 0.5, "start_s": ONSET_S["c09"]},
]


def fault_rig(faulty: bool, cells: int = 12, seed: int = 0):
    """BasicRig's schedule (0.5C CC-CV, rest, 1C discharge, rest; NMC811) on a rig with FAULT_SPECS injected."""
    from simulator.basic import DISCHARGE_STEP
    from simulator.protocol import cccv
    from simulator.rig import Rig, RigSpec

    spec = RigSpec(
        cells=cells,
        chemistry="nmc811",
        protocol=cccv(0.5, 1.0, 4.2, 2.5, 0.05, 600.0),
        start_step=DISCHARGE_STEP,
        seed=seed,
        faults=FAULT_SPECS if faulty else None,
    )
    return Rig(spec)


def simulate(faulty: bool, seconds: float = 8 * HOUR, cfg: TwinConfig | None = None):
    tp = TwinProcessor(cfg or TwinConfig(), chemistries={"sim": rigdata.basic_rig_chemistry()})
    rig = fault_rig(faulty)
    events, cycles = [], []
    for b in rigdata.run(seconds=seconds, dt_s=5.0, rig=rig):
        ev, cy = tp.process(b, "sim")
        events += ev
        cycles += cy
    tp.rig = rig  # the simulated truth, for the tests
    return tp, events, cycles


@pytest.fixture(scope="session")
def healthy_run():
    return simulate(False)


@pytest.fixture(scope="session")
def faulty_run():
    return simulate(True)
