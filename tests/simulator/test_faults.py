"""Faults by config and time: each kind shows up where it should (physics or sensor view), only on its cells and
only from its start; bad fault specs are refused naming the fault and the item."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.faults import FaultError
from simulator.rig import Rig, RigSpec

BASE = {
    "cells": 4,
    "chemistry": "nmc811",
    "initial_soc": 0.8,
    "sensor_noise": {},
    "ageing": False,
    "variability": {"capacity_cv": 0.0, "resistance_cv": 0.0, "ageing_cv": 0.0},
}
DISCHARGE = [{"step": "cc", "c_rate": -1.0}]


def rig(faults, **kw) -> Rig:
    return Rig(RigSpec(**{**BASE, "protocol": DISCHARGE, **kw, "faults": faults}))


def test_contact_resistance_rises_from_its_start_on_its_cell():
    r = rig([{"kind": "contact_resistance", "cell": "c03", "start_s": 600, "ohm": 0.01, "ohm_per_h": 0.1}])
    r.run(590, 10.0)
    before = r.voltage_v.copy()
    assert np.ptp(before) < 1e-9  # identical cells before the fault
    r.run(600, 10.0)
    sag = r.voltage_v[0] - r.voltage_v[2]
    # 5 A through 0.01 + 0.1 * (600 s / 3600) ohm ~ 0.133 V; the contact's heat warms the cell, whose own
    # resistance then falls a little (Arrhenius), so the sag is somewhat less
    assert sag == pytest.approx(5.0 * (0.01 + 0.1 * 600 / 3600), rel=0.2)
    assert r.temp_c[2] > r.temp_c[0]


def test_internal_short_discharges_and_heats_a_resting_cell():
    r = rig(
        [{"kind": "internal_short", "cell": ["c01", "c04"], "start_s": 0, "ohm": 10.0}], protocol=[{"step": "rest"}]
    )
    soc0 = r.soc.copy()
    r.run(4 * 3600, 30.0)
    lost = soc0 - r.soc
    assert lost[0] > 0.05 and lost[3] > 0.05 and abs(lost[1]) < 1e-6
    assert r.temp_c[0] > r.temp_c[1] + 0.5
    assert np.all(r.current_a == 0)  # the cycler sees nothing: the leak is inside the cell


def test_runaway_precursor_self_heating_accelerates():
    r = rig(
        [{"kind": "runaway_precursor", "cell": "c02", "start_s": 300, "w": 0.2, "doubling_s": 900, "max_w": 20}],
        protocol=[{"step": "rest"}],
    )
    temps = []
    r.run(5400, 60.0, every=lambda x: temps.append(x.temp_c[1]))
    t = np.array(temps)
    assert t[3] == pytest.approx(25.0, abs=0.01)  # nothing before start
    rise = np.diff(t[5::20])
    assert np.all(np.diff(rise) > 0)  # each 20 minutes warmer faster than the last
    assert t[-1] > 30.0 and r.temp_c[0] == pytest.approx(25.0, abs=0.01)


def test_capacity_outlier_delivers_less():
    r = rig([{"kind": "capacity_outlier", "cell": "c04", "factor": 0.8}], initial_soc=0.0, cycles=1, protocol="cccv")
    r.run(30_000, 10.0, until_cycles=1)
    c = r.log.columns()
    assert c["discharge_ah"][3] == pytest.approx(0.8 * c["discharge_ah"][0], rel=0.03)


def test_sensor_faults_act_on_the_sensor_view_only():
    r = rig(
        [
            {"kind": "sensor_offset", "cell": "c01", "field": "voltage_v", "offset": 0.05, "start_s": 100},
            {"kind": "sensor_stuck", "cell": "c02", "field": "temperature_c", "start_s": 100},
            {
                "kind": "sensor_dropout",
                "cell": "c03",
                "field": "current_a",
                "probability": 1.0,
                "start_s": 100,
                "end_s": 200,
            },
            {"kind": "sensor_noise", "cell": "c04", "field": "voltage_v", "sigma": 0.01},
        ],
        protocol=DISCHARGE,
    )
    seen = []
    r.run(300, 1.0, every=lambda x: seen.append((x.measure(), x.voltage_v.copy(), x.temp_c.copy())))
    m = {k: np.array([s[0][k] for s in seen]) for k in ("voltage_v", "current_a", "temperature_c")}
    true_v = np.array([s[1] for s in seen])
    true_t = np.array([s[2] for s in seen])
    assert np.allclose(m["voltage_v"][150:, 0] - true_v[150:, 0], 0.05)
    assert np.allclose(m["voltage_v"][:90, 0], true_v[:90, 0])
    stuck = m["temperature_c"][120:, 1]
    assert np.ptp(stuck) == 0 and true_t[-1, 1] > stuck[0] + 0.5  # frozen while the cell warms
    assert np.all(np.isnan(m["current_a"][100:198, 2])) and not np.isnan(m["current_a"][250, 2])
    assert 0.005 < np.std(m["voltage_v"][:, 3] - true_v[:, 3]) < 0.015
    assert np.allclose(m["voltage_v"][:, 1], true_v[:, 1])  # untouched cell


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"kind": "meteor"}, "fault 1: kind = 'meteor'"),
        ({"kind": "internal_short", "cell": "c01"}, "internal_short\\): ohm is required"),
        ({"kind": "internal_short", "cell": "c09", "ohm": 5}, "unknown cell\\(s\\) \\['c09'\\]"),
        ({"kind": "sensor_offset", "cell": "c01", "field": "pressure", "offset": 1}, "field = 'pressure'"),
        ({"kind": "contact_resistance", "cell": "c01", "ohm": -1}, "ohm = -1"),
        ({"kind": "contact_resistance", "cell": "c01", "start_s": 50, "end_s": 10}, "end_s"),
        ({"kind": "capacity_outlier", "cell": "c01", "factor": 0.9, "colour": "red"}, "unknown key.*colour"),
    ],
)
def test_bad_faults_are_refused_naming_the_item(spec, words):
    with pytest.raises(FaultError, match=words):
        rig([spec])
