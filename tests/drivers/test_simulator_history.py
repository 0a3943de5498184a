"""The simulator driver's simulated past (issue 19): made at open, stamped to end at the wall clock, replayed as
ordinary batches before the live samples, flagged in status, and not made again for cells the store already has."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from drivers.base import DriverContext, Event
from drivers.simulator.driver import SimulatorConfig, SimulatorDriver

CFG = {"type": "simulator", "name": "sim", "cells": 3, "charge_c_rate": 2.0, "discharge_c_rate": 2.0, "rest_s": 60.0}


async def _drain(drv: SimulatorDriver, live_batches: int) -> tuple[list, list]:
    past, live = [], []
    await drv.open()
    try:
        while not (drv.history is None or drv.history.done):
            past.append(await drv.read())
        for _ in range(live_batches):
            live.append(await drv.read())
    finally:
        await drv.close()
    return past, live


def test_the_past_ends_now_and_live_samples_follow():
    events: list[Event] = []
    drv = SimulatorDriver(
        SimulatorConfig(**CFG, history_cycles=3, history_sample_s=60, history_ageing_acceleration=50, speed=1000),
        DriverContext(emit=events.append),
    )
    before_ms = time.time_ns() // 1_000_000
    past, live = asyncio.run(_drain(drv, 2))
    after_ms = time.time_ns() // 1_000_000
    ts = np.concatenate([b.ts_ms for b in past])
    per_cell = ts.reshape(-1, 3)
    assert np.all(per_cell == per_cell[:, :1]) and np.all(np.diff(per_cell[:, 0]) == 60_000)  # one clock, 60 s apart
    announced_ms = next(e.ts_ms for e in events if e.kind == "simulator.history")
    assert before_ms <= ts[-1] <= announced_ms <= after_ms  # ends at the wall clock when it was made...
    assert ts[0] < ts[-1] - 2 * 3600_000  # ...after three 2C cycles of past (about 3 h with CV and rests)
    assert int(drv.rig.cycle.min()) >= 3
    live_ts = np.concatenate([b.ts_ms for b in live])
    assert live_ts.min() > ts[-1] and np.all(np.isfinite(np.concatenate([b.voltage_v for b in past])))
    h = drv.status()["history"]
    assert h["simulated"] is True and h["state"] == "done" and h["readings"] == ts.size
    assert h["replayed_readings"] == ts.size and h["until_ts"] == ts[-1]
    announced = [e for e in events if e.kind == "simulator.history"]
    assert len(announced) == 1 and announced[0].level == "info" and "simulated history" in announced[0].message


def test_no_second_past_for_cells_the_store_already_holds():
    drv = SimulatorDriver(
        SimulatorConfig(**CFG, history_cycles=3), DriverContext(emit=lambda e: None, stored_cells=lambda: {"c02"})
    )
    past, live = asyncio.run(_drain(drv, 1))
    assert past == [] and drv.history is None and drv.status()["history"]["state"].startswith("skipped")
    assert len(live[0]) > 0


@pytest.mark.parametrize(
    "bad, match",
    [({"history_cycles": -1}, "greater than or equal"), ({"history_sample_s": 0.5}, "greater than or equal")],
)
def test_bad_history_settings_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        SimulatorConfig(**CFG, **bad)


def test_a_restart_on_the_same_store_continues_instead_of_making_a_second_past(tmp_path):
    from agent.config import parse_config
    from agent.runtime import build_agent

    cfg = parse_config(
        {
            "rig": "hist-rig",
            "store": {"path": str(tmp_path / "store.db")},
            "drivers": [{**CFG, "history_cycles": 3, "history_sample_s": 60, "history_ageing_acceleration": 50}],
            "twin": {"max_gap_s": 90},
        }
    )

    async def run_once() -> dict:
        agent = build_agent(cfg)
        await agent.start()
        try:
            for _ in range(600):
                await asyncio.sleep(0.05)
                h = agent.runners["sim"].status()["detail"].get("history", {})
                # a live batch read after the past means the past's last batch was stored (one batch at a time)
                if agent.runners["sim"].batches >= 2 and h.get("state", "").startswith(("done", "skipped")):
                    break
            return h
        finally:
            await agent.stop(drain_timeout_s=0.5)

    first = asyncio.run(run_once())
    assert first["state"] == "done" and first["simulated"] is True
    import sqlite3

    con = sqlite3.connect(tmp_path / "store.db")
    cycles = con.execute("SELECT COUNT(*) FROM cycles").fetchone()[0]
    con.close()
    assert cycles >= 3  # the twin found the past's cycles (the first one it sees is partial)
    second = asyncio.run(run_once())
    assert second["state"].startswith("skipped"), second


def test_the_default_nmc_past_bends_into_a_knee():
    """The embedded default's NMC rig (issue 13): its simulated past must show a knee within its history, so a
    newcomer's dashboard has accelerating fade for the knee-aware SOH forecast to follow (at 4x it showed none)."""
    import tomllib

    from agent.config import DEFAULT_CONFIG_TOML
    from drivers.simulator.history import generate
    from simulator.plating import knee_onset
    from simulator.rig import Rig

    section = next(d for d in tomllib.loads(DEFAULT_CONFIG_TOML)["drivers"] if d["chemistry"] == "nmc811")
    cfg = SimulatorConfig(**section)
    rig = Rig(cfg.rig_spec())
    generate(rig, cfg.history_cycles, cfg.history_sample_s, cfg.history_ageing_acceleration, lambda: 0)
    cols = rig.log.columns()
    knees = []
    for cell in range(cfg.cells):
        k = (cols["cell"] == cell) & (cols["cycle"] > 1)  # the first cycle starts mid-discharge
        onset, before, after = knee_onset(cols["cycle"][k], cols["discharge_ah"][k])
        if np.isfinite(onset) and 10 <= onset <= cfg.history_cycles - 20 and after < 1.3 * before:
            knees.append((cell, onset, before, after))  # slopes are negative: the fade after is >= 1.3x steeper
    assert knees, f"no cell of the default NMC past shows a knee within its {cfg.history_cycles} cycles"
