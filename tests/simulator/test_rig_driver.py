"""The rig seam (BasicRig/Rig) the driver and emulators use, the two clocks, the simulator driver's config, and the
agent running on a faulty simulated rig (a real agent process, its SQLite store checked afterwards)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import numpy as np
import pytest

from drivers.base import DriverContext, Flag
from drivers.simulator import SimulatorConfig, SimulatorDriver
from simulator import BasicRig, BasicRigSpec, Rig, RigSpec
from tests.conftest import agent_config


def test_basic_rig_keeps_its_api():
    r = BasicRig(BasicRigSpec(cells=12, capacity_ah=3.0, seed=2, cell_prefix="x"))
    assert r.cell_ids[0] == "x01" and len(r.cell_ids) == 12
    for _ in range(30):
        r.step(1.0)
    m = r.measure()
    assert set(m) == {"voltage_v", "current_a", "temperature_c"}
    assert all(v.shape == (12,) for v in m.values())
    assert np.allclose(m["current_a"], -3.0, atol=0.02)  # starts in the 1C discharge, current < 0
    assert r.time_s == 30.0 and r.cycle.shape == (12,) and np.all((r.soc > 0.2) & (r.soc < 0.8))
    assert np.all(r.capacity_ah > 2.8) and r.temp_c.shape == (12,)


def test_step_is_vectorised_over_cells_and_deterministic():
    a = Rig(RigSpec(cells=200, chemistry="lfp", seed=7))
    b = Rig(RigSpec(cells=200, chemistry="lfp", seed=7))
    for _ in range(50):
        a.step(1.0)
        b.step(1.0)
    assert np.array_equal(a.measure()["voltage_v"], b.measure()["voltage_v"])
    assert np.unique(a.voltage_v).size > 150  # cells differ (variability), no accidental broadcast


def test_paced_clock_follows_speed_and_fast_clock_does_not_wait():
    r = Rig(RigSpec(cells=2))
    t0 = time.monotonic()
    r.run(20.0, 1.0, paced=True, speed=100.0)
    paced_wall = time.monotonic() - t0
    assert r.time_s == 20.0
    assert paced_wall >= 0.19  # 20 simulated s at 100x cannot finish in less than 0.2 wall s
    with pytest.raises(ValueError, match="speed"):
        r.run(1.0, 1.0, paced=True, speed=0.0)


def _ctx(events):
    return DriverContext(emit=events.append, clock_ms=lambda: 1_700_000_000_000)


def test_driver_old_keys_still_work_and_timestamps_follow_simulated_clock():
    cfg = SimulatorConfig(
        type="simulator",
        cells=3,
        capacity_ah=5.0,
        sample_hz=2.0,
        speed=1.0,
        paced=False,
        max_batch_samples=10,
        charge_c_rate=0.5,
        discharge_c_rate=1.0,
        rest_s=600,
        ambient_c=20,
        seed=1,
        cell_prefix="k",
    )
    events: list = []
    d = SimulatorDriver(cfg, _ctx(events))
    asyncio.run(d.open())
    b = asyncio.run(d.read())
    assert d.cells == ("k01", "k02", "k03") and len(b) == 30
    assert np.array_equal(np.unique(np.diff(np.unique(b.ts_ms))), [500])  # 2 Hz simulated
    assert b.ts_ms[0] == 1_700_000_000_000 + 500
    assert np.all(b.current_a < 0)  # the default schedule starts in the discharge, as before
    assert d.status()["chemistry"] == "nmc811"


def test_driver_faults_reach_the_batch_and_are_announced():
    cfg = SimulatorConfig(
        type="simulator",
        cells=4,
        chemistry="lfp",
        paced=False,
        max_batch_samples=100,
        protocol="severson:5.4C(40%)-3.6C",
        initial_soc=0.0,
        faults=[
            {"kind": "sensor_dropout", "cell": "c02", "field": "temperature_c", "start_s": 50},
            {"kind": "contact_resistance", "cell": "c04", "start_s": 0, "ohm": 0.05},
        ],
    )
    events: list = []
    d = SimulatorDriver(cfg, _ctx(events))
    asyncio.run(d.open())
    b = asyncio.run(d.read())
    c2 = b.cell == 1
    assert np.all(np.isnan(b.temperature_c[c2][50:])) and not np.any(np.isnan(b.temperature_c[c2][:49]))
    assert np.all(b.flags[c2][50:] & Flag.TEMPERATURE_MISSING)
    v = b.voltage_v.reshape(100, 4)
    # charging at 5.4C (12.4 A) through 50 mOhm more: ~0.6 V higher, so that cell reaches v_max first
    assert np.all(v[1:4, 3] > v[1:4, 0] + 0.5)
    i = b.current_a.reshape(100, 4)
    assert (i[:, 3] < 12.0).any() and np.allclose(i[:, 0], 5.4 * 2.3, atol=0.05)
    kinds = [(e.kind, e.cell) for e in events]
    assert ("simulator.fault", "c02") in kinds and ("simulator.fault", "c04") in kinds


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"chemistry": "nca"}, "unknown chemistry 'nca'"),
        ({"protocol": "severson:9C(x)-1C"}, "cannot parse '9C\\(x\\)'"),
        ({"faults": [{"kind": "internal_short", "cell": "c01"}]}, "ohm is required"),
        ({"initial_soc": 1.5}, "initial_soc"),
        ({"capacity_ah": -2}, "capacity_ah"),
    ],
)
def test_driver_config_refuses_bad_input_naming_it(bad, words):
    with pytest.raises(ValueError, match=words):
        SimulatorConfig(type="simulator", **bad)


def test_agent_on_a_faulty_simulated_rig(tmp_path, agent_proc):
    """The agent process reads a faulty simulated rig from a TOML config (faults as inline tables) and stores the
    faulty sensor view and the fault announcements."""
    cfg = agent_config(
        tmp_path,
        None,
        None,
        None,
        drivers=[
            {
                "type": "simulator",
                "name": "sim",
                "cells": 3,
                "chemistry": "lfp",
                "sample_hz": 10.0,
                "speed": 20.0,
                "faults": [
                    {"kind": "sensor_dropout", "cell": "c03", "field": "voltage_v", "start_s": 2.0},
                    {"kind": "sensor_offset", "cell": "c01", "field": "temperature_c", "offset": 40.0, "start_s": 0.0},
                ],
            }
        ],
    )
    agent = agent_proc(cfg).start()
    db_path = cfg["store"]["path"]
    deadline = time.monotonic() + 60
    n = 0
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(db_path) as db:
                n = db.execute(
                    "SELECT count(*) FROM readings r JOIN cells c ON c.idx = r.cell "
                    "WHERE c.id = 'c03' AND r.voltage_v IS NULL"
                ).fetchone()[0]
        except sqlite3.Error:
            n = 0
        if n >= 50:
            break
        time.sleep(0.3)
    assert agent.stop() == 0, agent.log()[-3000:]
    assert n >= 50, agent.log()[-3000:]
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "SELECT c.id, r.voltage_v, r.temperature_c, r.flags FROM readings r JOIN cells c "
            "ON c.idx = r.cell ORDER BY r.seq"
        ).fetchall()
        events = db.execute("SELECT kind, cell, data FROM events WHERE kind = 'simulator.fault'").fetchall()
    c3 = [r for r in rows if r[0] == "c03"]
    assert c3[0][1] is not None and c3[-1][1] is None and c3[-1][3] & Flag.VOLTAGE_MISSING
    t1 = np.array([r[2] for r in rows if r[0] == "c01"])
    t2 = np.array([r[2] for r in rows if r[0] == "c02"])
    assert np.mean(t1) - np.mean(t2) == pytest.approx(40.0, abs=1.0)
    assert {e[1] for e in events} == {"c01", "c03"}
    assert json.loads(events[0][2])["fault"]["kind"] in ("sensor_dropout", "sensor_offset")
