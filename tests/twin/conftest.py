"""Twin test fixtures: simulated runs computed once per session (they are the expensive part)."""
from __future__ import annotations

import numpy as np
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


# The simulator's fault kinds (simulator/faults.py on the physics rig), one per cell.
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


def make_faults(rng: np.random.Generator) -> list:
    """The same faults applied by hand to the small BasicRig's arrays (it has no fault injection)."""
    frozen: dict[str, float] = {}

    def noise(rig, t, m):  # c01: sensor_noise on voltage
        if t > ONSET_S["c01"]:
            m["voltage_v"][0] += rng.normal(0, 0.05)

    def stuck(rig, t, m):  # c02: sensor_stuck on voltage
        if t > ONSET_S["c02"]:
            m["voltage_v"][1] = frozen.setdefault("v", float(m["voltage_v"][1]))

    def offset(rig, t, m):  # c03: sensor_offset +80 mV on voltage
        if t > ONSET_S["c03"]:
            m["voltage_v"][2] += 0.08

    def short(rig, t, m):  # c05: internal_short 50 ohm: drains charge the cycler does not see
        rig.soc[4] -= rig._terminal_v(rig.current_a)[4] / 50.0 * 5.0 / 3600.0 / rig.capacity_ah[4]

    def runaway(rig, t, m):  # c06: runaway_precursor 0.1 W doubling every 900 s
        if t > ONSET_S["c06"]:
            p = min(0.1 * 2 ** ((t - ONSET_S["c06"]) / 900.0), 50.0)
            rig.temp_c[5] += 5.0 * p / rig.heat_capacity_j_k

    def capacity(rig, t, m):  # c07: capacity_outlier factor 0.85
        if t <= 5.0:
            rig.capacity_ah[6] *= 0.85

    def contact(rig, t, m):  # c08: contact_resistance 30 mOhm
        if t <= 5.0:
            rig.r0_ohm[7] += 0.03

    def dropout(rig, t, m):  # c09: sensor_dropout on temperature, probability 0.5
        if t > ONSET_S["c09"] and rng.random() < 0.5:
            m["temperature_c"][8] = np.nan

    return [noise, stuck, offset, short, runaway, capacity, contact, dropout]


def fault_rig(faulty: bool, cells: int = 12, seed: int = 0):
    """(rig, hand-applied faults): the physics rig gets FAULT_SPECS by config, the small BasicRig by hand."""
    if not rigdata.physics_rig():
        rig = rigdata.BasicRig(rigdata.BasicRigSpec(cells=cells, seed=seed))
        return rig, make_faults(np.random.default_rng(5)) if faulty else []
    from simulator.basic import DISCHARGE_STEP
    from simulator.protocol import cccv
    from simulator.rig import Rig, RigSpec

    spec = RigSpec(cells=cells, chemistry="nmc811", protocol=cccv(0.5, 1.0, 4.2, 2.5, 0.05, 600.0),
                   start_step=DISCHARGE_STEP, seed=seed, faults=FAULT_SPECS if faulty else None)
    return Rig(spec), []


def simulate(faulty: bool, seconds: float = 8 * HOUR, cfg: TwinConfig | None = None):
    tp = TwinProcessor(cfg or TwinConfig(), chemistries={"sim": rigdata.basic_rig_chemistry()})
    rig, faults = fault_rig(faulty)
    events, cycles = [], []
    for b in rigdata.run(seconds=seconds, dt_s=5.0, faults=faults, rig=rig):
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
