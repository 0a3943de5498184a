"""CAN: DBC decoding (golden frames made without cantools, property tests), then the agent on python-can's
virtual bus and on slcan over a socat pty pair against the emulated BMS, with bus errors, bus-off, corrupt and
garbled frames, silence and out-of-range values."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import DriverContext, Flag
from drivers.can import CanConfig, CanDriver
from drivers.can.dbcmap import CORRUPT, OK, UNKNOWN, FrameDecoder, Updates
from drivers.can.emulator import CanEmulator
from drivers.can.profile import load_profile
from drivers.emulator import RigFeed, basic_rig
from drivers.profiles import FIELD_INDEX, ProfileError
from drivers.stale import Freshness
from tests.drivers.support import (
    FIELDS,
    EventLog,
    agent_config,
    every_cell_has,
    fresh_rows,
    match_served,
    read_until_batch,
    running_agent,
    stored_events,
    stored_rows,
    to_toml,
    wait_for,
    wait_until,
)
from tests.support.agentproc import AgentProcess

GOLDEN = Path(__file__).resolve().parents[2] / "drivers" / "can" / "golden" / "bms16.json"
CASES = json.loads(GOLDEN.read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"][:40] for c in CASES])
def test_golden_frames(case):
    dec = FrameDecoder(load_profile("bms16"))
    fresh = Freshness(16, dec.stale_after_ms, 5000)
    upd = Updates()
    codes = [dec.decode(int(i, 16), False, bytes.fromhex(d), upd) for i, d in case["frames"]]
    assert (codes.count(OK), codes.count(CORRUPT), codes.count(UNKNOWN)) == (
        case["ok"],
        case["corrupt"],
        case["unknown"],
    )
    upd.apply(fresh, 1000)
    for field, cells in case["expect"].items():
        for cell, want in cells.items():
            assert fresh.value[int(cell) - 1, FIELD_INDEX[field]] == pytest.approx(want, abs=1e-9), (field, cell)
    for field, cells in case["unset"].items():
        for cell in cells:
            assert np.isnan(fresh.value[cell - 1, FIELD_INDEX[field]]), (field, cell)
    idx, _, flags = fresh.snapshot(1000)
    assert sorted(int(i) + 1 for i, f in zip(idx, flags) if f & Flag.SENSOR_FAULT) == case["sensor_fault_cells"]


def test_cycle_times_from_the_dbc_set_the_stale_periods():
    dec = FrameDecoder(load_profile("bms16"))
    # voltages and pack current every 100 ms, temperatures every 1000 ms; stale after 3 cycles
    assert dec.stale_after_ms[0].tolist() == [300.0, 300.0, 3000.0]


def test_mapping_errors_are_profile_errors(tmp_path):
    src = Path(load_profile("bms16").path).parent
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'name = "bad"\ndbc = "{src / "bms16.dbc"}"\ncells = 16\n[[signals]]\nsignal = "Pack_Curent"\n'
        'field = "current_a"\ncell = "all"\n'
    )
    with pytest.raises(ProfileError, match="match no signal of bms16.dbc: \\['Pack_Curent'\\]"):
        FrameDecoder(load_profile(str(bad)))
    nocell = tmp_path / "nocell.toml"
    nocell.write_text(
        f'name = "p"\ndbc = "{src / "bms16.dbc"}"\ncells = 16\n[[signals]]\npattern = "Cell"\nfield = "voltage_v"\n'
    )
    with pytest.raises(ProfileError, match="named group 'cell'"):
        load_profile(str(nocell))


@settings(max_examples=300, deadline=None)
@given(
    frame_id=st.one_of(st.sampled_from([0x300, 0x301, 0x302]), st.integers(0, 0x1FFFFFFF)),
    extended=st.booleans(),
    data=st.binary(max_size=64),
)
def test_random_frames_never_raise(frame_id, extended, data):
    dec = FrameDecoder(load_profile("bms16"))
    fresh = Freshness(16, dec.stale_after_ms, 5000)
    upd = Updates()
    assert dec.decode(frame_id, extended, data, upd) in (OK, CORRUPT, UNKNOWN)
    upd.apply(fresh, 1)
    fresh.snapshot(2)


def _check_served(
    rows, emu: CanEmulator, feed: RigFeed, prefix: str, cells=(1, 4, 5, 12, 16), min_rows=8, window_ms=3500
):
    ts, vals = feed.served()
    view = emu.cell_view(vals)
    tol = {f: emu.resolution(f) / 2 for f in FIELDS}
    assert tol == pytest.approx({"voltage_v": 0.0005, "current_a": 0.005, "temperature_c": 0.005})
    for c in cells:
        r = rows[f"{prefix}{c:02d}"]
        fresh = (r.flags & (Flag.STALE | 7)) == 0
        assert fresh.sum() >= min_rows, f"cell {c}: {fresh.sum()} complete fresh rows"
        assert match_served(r.ts_ms[fresh], r.values[fresh], ts, view, c - 1, tol, window_ms) == []


def test_virtual_bus_agent_stores_served_values_and_reports_bus_trouble(tmp_path, serve):
    feed = RigFeed(basic_rig(16, seed=4), tick_s=0.1, history=1500)
    emu = CanEmulator(feed, "bms16", "virtual", f"vbus-{time.monotonic_ns()}")
    serve(emu)
    cfg = agent_config(
        tmp_path,
        [
            {
                "type": "can",
                "name": "bms",
                "interface": "virtual",
                "channel": emu.channel,
                "profile": "bms16",
                "sample_hz": 10,
                "down_after_s": 1.0,
                "cell_prefix": "b-c",
            }
        ],
    )
    db = cfg["store"]["path"]

    def events():
        return [e["kind"] for e in stored_events(db)]

    async def scenario():
        async with running_agent(cfg) as agent:
            # temperatures come once a second: wait until every cell has complete fresh rows to compare
            await wait_for(lambda: every_cell_has(db, 16, 8), 20, "8 complete fresh rows for every cell")
            emu.fault = "error_frames"
            await wait_for(lambda: "driver.bus_error" in events(), 5, "a bus_error event")
            emu.fault = "corrupt"
            await wait_for(lambda: "driver.device_fault" in events(), 5, "a corrupt-frame fault event")
            emu.fault = None
            emu.go_bus_off()
            await wait_for(lambda: "driver.device_down" in events(), 5, "the BMS reported down")
            emu.fault = None
            await wait_for(
                lambda: "driver.bus_recovered" in events() and "driver.device_up" in events(),
                5,
                "recovery after bus off",
            )
            feed.set_override(4, "voltage_v", 9.9)
            await wait_for(lambda: "validate.out_of_range" in events(), 5, "the out-of-range event")
            feed.set_override(4, "voltage_v", None)
            cleared_ms = time.time_ns() // 1_000_000
            await wait_for(lambda: fresh_rows(db, cleared_ms + 300).get("b-c05", 0) >= 2, 10, "cell 5 after the fix")
            return agent.runners["bms"].restarts, agent.runners["bms"].driver.status()

    restarts, status = asyncio.run(scenario())
    assert restarts == 0
    assert status["corrupt"] > 0 and status["error_frames"] > 0 and status["bus_off"] == 1
    rows = stored_rows(db)
    assert len(rows) == 16
    _check_served(rows, emu, feed, "b-c")
    kinds = events()
    assert kinds.index("driver.bus_off") < kinds.index("driver.bus_recovered")
    ev = [e for e in stored_events(db) if e["kind"] == "driver.device_fault"]
    assert "does not decode with the DBC" in ev[0]["message"]
    r5 = rows["b-c05"]
    hit = np.isclose(r5.values[:, 0], 9.9)
    assert hit.any() and (r5.flags[hit] & Flag.OUT_OF_RANGE).all()
    stale = (rows["b-c01"].flags & Flag.STALE) != 0
    assert stale.any(), "values of a silent BMS are flagged stale before they expire"


def test_slcan_over_a_pty_with_the_agent_process(tmp_path, serve, pty_pair):
    pair = pty_pair("slcan")
    feed = RigFeed(basic_rig(16, seed=8), tick_s=0.1, history=1500)
    emu = CanEmulator(feed, "bms16", "slcan", str(pair.a), bus_options={"tty_baudrate": 115200})
    serve(emu)
    cfg = agent_config(
        tmp_path,
        [
            {
                "type": "can",
                "name": "bms",
                "interface": "slcan",
                "channel": str(pair.b),
                "profile": "bms16",
                "sample_hz": 5,
                "cell_prefix": "s-c",
                "bus_options": {"tty_baudrate": 115200, "sleep_after_open": 0.1},
            }
        ],
    )
    proc = AgentProcess(tmp_path / "agent", {"rig": cfg["rig"]})
    proc.config_path.write_text(to_toml(cfg))
    proc.start()
    db = cfg["store"]["path"]

    def parse_faults() -> bool:
        return any("could not parse" in e["message"] for e in stored_events(db) if e["kind"] == "driver.device_fault")

    try:
        proc.wait_log("agent started", 20)
        wait_until(lambda: every_cell_has(db, 16, 10), 30, "10 complete fresh rows for every cell")
        emu.fault = "garbage"  # junk ASCII and bytes on the serial link between frames
        wait_until(parse_faults, 20, "the driver to report what it could not parse")
        emu.fault = None
        clean_ms = time.time_ns() // 1_000_000
        wait_until(lambda: every_cell_has(db, 16, 3, clean_ms + 300), 20, "fresh rows once the link was clean")
    finally:
        rc = proc.stop()
    assert rc == 0, proc.log()[-3000:]
    assert "driver failed" not in proc.log(), proc.log()[-3000:]
    rows = stored_rows(cfg["store"]["path"])
    assert len(rows) == 16
    _check_served(rows, emu, feed, "s-c", min_rows=10)
    for c, r in rows.items():
        fresh_after = (r.ts_ms > clean_ms + 300) & ((r.flags & (Flag.STALE | 7)) == 0)
        assert fresh_after.sum() >= 3, f"{c}: no fresh values once the link was clean again"
    faults = [e for e in stored_events(cfg["store"]["path"]) if e["kind"] == "driver.device_fault"]
    assert faults and "could not parse" in faults[0]["message"]


def test_can_driver_recovers_from_silence_without_restart(serve):
    feed = RigFeed(basic_rig(16, seed=2), tick_s=0.1, history=800)
    emu = CanEmulator(feed, "bms16", "virtual", f"vbus-{time.monotonic_ns()}")
    serve(emu)
    cfg = CanConfig.model_validate(
        {
            "type": "can",
            "interface": "virtual",
            "channel": emu.channel,
            "profile": "bms16",
            "sample_hz": 10,
            "down_after_s": 0.8,
        }
    )
    log = EventLog()

    async def scenario():
        drv = CanDriver(cfg, DriverContext(emit=log))
        await drv.open()

        def full_and_fresh(b) -> bool:
            return len(b) == 16 and not (b.flags & (Flag.STALE | 7)).any()

        try:
            before = await read_until_batch(drv, full_and_fresh, 10, "16 fresh rows")
            emu.fault = "silent"
            during = await read_until_batch(
                drv, lambda b: len(b) == 0 and "driver.device_down" in log.kinds(), 10, "values to expire"
            )
            emu.fault = None
            after = await read_until_batch(drv, full_and_fresh, 10, "16 fresh rows again")
            return before, during, after
        finally:
            await drv.close()

    before, during, after = asyncio.run(scenario())
    assert len(before[-1]) == 16 and not (before[-1].flags & Flag.STALE).any()
    flags = np.concatenate([b.flags for b in during])
    assert (flags & Flag.STALE).any(), "values stop being fresh: flagged stale first"
    # then they expire: the silent BMS yields no rows (the read that ended ``during`` was empty)
    assert [e.kind for e in log.events if e.kind.startswith("driver.device")] == [
        "driver.device_down",
        "driver.device_up",
    ]
    assert len(after[-1]) == 16 and np.isfinite(after[-1].voltage_v).all()


def test_the_latest_of_repeated_updates_wins():
    fresh = Freshness(2, 100, 1000)
    cells = np.array([0, 1, 0, 0, 1])
    fields = np.array([0, 0, 0, 0, 0])
    fresh.update_points(cells, fields, np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 10)
    assert fresh.value[:, 0].tolist() == [4.0, 5.0]
