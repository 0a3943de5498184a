"""Modbus over real transports against the emulator: TCP on 127.0.0.1 and RTU over a socat pty pair.

The agent (a real process, or the in-process pipeline where the test needs to reach into it) stores what the
emulator served; faults in one device never stall or corrupt the others; devices come back by themselves.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import numpy as np
import pytest

from drivers.base import DriverContext, Flag
from drivers.emulator import RigFeed, basic_rig
from drivers.modbus import ModbusConfig, ModbusDriver
from drivers.modbus.emulator import ModbusEmulator
from tests.drivers.support import (
    FIELDS,
    EventLog,
    agent_config,
    collect,
    event_kinds,
    match_served,
    read_until_batch,
    running_agent,
    stored_events,
    stored_rows,
    to_toml,
    wait_for,
)
from tests.support.agentproc import AgentProcess


def _device(name: str, dev_id: int, **where) -> dict:
    return {"name": name, "profile": "bms16", "device_id": dev_id, "cell_prefix": f"{name}c", **where}


def _count(db_path, cell: str) -> int:
    try:
        db = sqlite3.connect(str(db_path))
        try:
            return db.execute(
                "SELECT count(*) FROM readings r JOIN cells c ON c.idx = r.cell WHERE c.id = ?", (cell,)
            ).fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _check_served(
    db_path, emu: ModbusEmulator, feed: RigFeed, devices: list[str], positions=(1, 6, 11, 16), min_rows: int = 8
) -> None:
    rows = stored_rows(db_path)
    ts, vals = feed.served()
    view = emu.cell_view(vals)
    tol = {f: emu.resolution(f) / 2 for f in FIELDS}
    assert tol["voltage_v"] == pytest.approx(0.0005) and tol["temperature_c"] == pytest.approx(0.05)
    for k, name in enumerate(devices):
        assert sum(1 for c in rows if c.startswith(f"{name}c")) == 16
        for pos in positions:
            r = rows[f"{name}c{pos:02d}"]
            assert len(r.ts_ms) >= min_rows, f"{name} cell {pos}: only {len(r.ts_ms)} rows"
            assert match_served(r.ts_ms, r.values, ts, view, k * 16 + pos - 1, tol, window_ms=1500) == []
            assert not (r.flags & (Flag.STALE | Flag.SENSOR_FAULT | 7)).any()


def _run_agent_process(tmp_path, cfg, until_cell: str, rows: int, timeout_s: float = 30.0) -> None:
    proc = AgentProcess(tmp_path / "agent", {"rig": cfg["rig"]})
    proc.config_path.write_text(to_toml(cfg))
    proc.start()
    try:
        proc.wait_log("agent started", 20)
        deadline = time.monotonic() + timeout_s
        while _count(cfg["store"]["path"], until_cell) < rows:
            assert proc.alive(), proc.log()[-3000:]
            assert time.monotonic() < deadline, f"fewer than {rows} rows for {until_cell}:\n{proc.log()[-3000:]}"
            time.sleep(0.2)
    finally:
        rc = proc.stop()
    assert rc == 0, proc.log()[-3000:]


def test_tcp_agent_stores_what_the_emulator_served(tmp_path, serve):
    feed = RigFeed(basic_rig(32, seed=3), tick_s=0.1, history=1200)
    emu = ModbusEmulator(feed, "bms16", [1, 2], tcp=("127.0.0.1", 0))
    serve(emu)
    port = emu.tcp[1]  # the emulator bound port 0 and kept the port it got
    cfg = agent_config(
        tmp_path,
        [
            {
                "type": "modbus",
                "name": "bms",
                "poll_interval_s": 0.2,
                "devices": [_device("m1", 1, tcp=f"127.0.0.1:{port}"), _device("m2", 2, tcp=f"127.0.0.1:{port}")],
            }
        ],
    )
    _run_agent_process(tmp_path, cfg, "m2c16", 12)
    _check_served(cfg["store"]["path"], emu, feed, ["m1", "m2"])
    # The map needs three reads per poll (0..15, 100..115, 200..203) and the driver sends exactly those.
    assert {(fc, a, n) for (_, fc, a, n) in emu.requests} == {(4, 0, 16), (4, 100, 16), (4, 200, 4)}


def _polls(batches, prefix: str) -> int:
    return sum(1 for b in batches if b.cells[0].startswith(prefix))


def test_tcp_faults_stay_with_their_device(serve):
    """A silent, failing, truncating or corrupting device is reported and backed off; its neighbour keeps its
    pace and values; an id the gateway does not know is reported down; every device recovers by itself."""
    feed = RigFeed(basic_rig(32, seed=5), tick_s=0.1, history=1200)
    emu = ModbusEmulator(feed, "bms16", [1, 2], tcp=("127.0.0.1", 0))
    serve(emu)
    port = emu.tcp[1]
    where = {"tcp": f"127.0.0.1:{port}"}
    cfg = ModbusConfig.model_validate(
        {
            "type": "modbus",
            "name": "bms",
            "poll_interval_s": 0.1,
            "timeout_s": 0.2,
            "retries": 1,
            "down_after_s": 1.0,
            "backoff_max_s": 0.4,
            "devices": [_device("m1", 1, **where), _device("m2", 2, **where), _device("m9", 9, **where)],
        }
    )
    log = EventLog()

    async def scenario():
        drv = ModbusDriver(cfg, DriverContext(emit=log))
        await drv.open()
        try:
            base = await collect(drv, 1.5)
            phases = {}
            for mode in ("silent", "exception", "truncate", "corrupt"):
                emu.faults[2] = mode
                phases[mode] = await collect(drv, 1.5)
                emu.faults.pop(2)
                await wait_for(
                    lambda: log.of("driver.device_up", "m2") or drv.status()["devices"]["m2"]["state"] == "up",
                    5,
                    f"m2 back after {mode}",
                )
                phases[mode] += await collect(drv, 0.6)
            return base, phases, drv.status()
        finally:
            await drv.close()

    base, phases, status = asyncio.run(scenario())
    m1_rate = _polls(base, "m1c") / 1.5
    assert m1_rate > 3, f"m1 polled only {m1_rate:.1f}/s without faults"
    for mode, batches in phases.items():
        assert _polls(batches, "m1c") / 2.1 > 0.5 * m1_rate, f"m1 slowed down while m2 was {mode}"
        assert _polls(batches, "m2c") > 0, f"m2 did not come back after {mode}"
    kinds = {e.data["fault"] for e in log.of("driver.device_fault", "m2")}
    assert {"timeout", "exception_4"} <= kinds, kinds
    assert log.of("driver.device_down", "m2") and log.of("driver.device_up", "m2")
    assert not log.of("driver.device_fault", "m1") and not log.of("driver.device_down", "m1")
    assert [e.data["fault"] for e in log.of("driver.device_fault", "m9")] == ["exception_11"]
    assert len(log.of("driver.device_down", "m9")) == 1 and status["devices"]["m9"]["state"] == "down"
    # Whatever the frames looked like, no value that reached the agent differs from what was served. (A block
    # that kept failing past down_after_s is missing, flagged, from rows of a device answering its other blocks:
    # those rows carry no value to compare.)
    ts, vals = feed.served()
    view, tol = emu.cell_view(vals), {f: emu.resolution(f) / 2 for f in FIELDS}
    for batches in [base, *phases.values()]:
        for b in batches:
            for r in range(0, len(b), 5):
                if b.flags[r] & 7:
                    continue
                rig_cell = (16 if b.cells[b.cell[r]].startswith("m2") else 0) + int(b.cells[b.cell[r]][-2:]) - 1
                assert (
                    match_served(
                        b.ts_ms[r : r + 1],
                        np.column_stack([b.voltage_v, b.current_a, b.temperature_c])[r : r + 1],
                        ts,
                        view,
                        rig_cell,
                        tol,
                        1500,
                    )
                    == []
                )


def test_out_of_range_and_a_vanished_server_reach_the_store(tmp_path, serve):
    feed = RigFeed(basic_rig(16, seed=7), tick_s=0.1, history=1200)
    emu = ModbusEmulator(feed, "bms16", [1], tcp=("127.0.0.1", 0))
    bg = serve(emu)
    port = emu.tcp[1]  # restarts bind the same port again
    cfg = agent_config(
        tmp_path,
        [
            {
                "type": "modbus",
                "name": "bms",
                "poll_interval_s": 0.1,
                "timeout_s": 0.2,
                "down_after_s": 1.0,
                "backoff_max_s": 0.5,
                "devices": [_device("m1", 1, tcp=f"127.0.0.1:{port}")],
            }
        ],
    )
    db = cfg["store"]["path"]

    async def scenario():
        async with running_agent(cfg) as agent:
            await wait_for(lambda: _count(db, "m1c03") >= 5, 10, "first rows")
            feed.set_override(2, "voltage_v", 9.5)  # a broken sense wire: 9.5 V on cell 3
            await wait_for(
                lambda: any(e["kind"] == "validate.out_of_range" for e in stored_events(db)),
                10,
                "the out-of-range event",
            )
            feed.set_override(2, "voltage_v", None)
            await asyncio.to_thread(bg.restart_server, 2.0)  # the device vanishes for 2 s, then returns
            n = _count(db, "m1c03")
            await wait_for(lambda: _count(db, "m1c03") >= n + 5, 15, "rows after the server returned")
            await wait_for(lambda: "driver.device_up" in event_kinds(db), 20, "the device_up event stored")
            return agent.runners["bms"].restarts

    restarts = asyncio.run(scenario())
    assert restarts == 0, "a vanished device must not restart the driver"
    events = stored_events(db)
    kinds = [e["kind"] for e in events]
    assert "driver.device_down" in kinds and "driver.device_up" in kinds
    assert kinds.index("driver.device_down") < kinds.index("driver.device_up")
    oor = [e for e in events if e["kind"] == "validate.out_of_range"]
    assert oor[0]["cell"] == "m1c03" and '"voltage_v"' in oor[0]["data"]
    r = stored_rows(db)["m1c03"]
    hit = np.isclose(r.values[:, 0], 9.5)
    assert hit.any() and (r.flags[hit] & Flag.OUT_OF_RANGE).all()
    assert not (r.flags[~hit] & Flag.OUT_OF_RANGE).any()


PARTIAL_PROFILE = """
name = "split"
cells = 4
[[registers]]
address = 10
function = "holding"
unit = "mV"
field = "voltage_v"
count = 4
[[registers]]
address = 10
function = "input"
type = "i16"
scale = 0.1
field = "temperature_c"
count = 4
"""


def test_a_failing_block_goes_stale_then_missing_while_the_rest_stays_fresh(tmp_path, serve):
    prof_path = tmp_path / "split.toml"
    prof_path.write_text(PARTIAL_PROFILE)
    feed = RigFeed(basic_rig(4, seed=1), tick_s=0.1)
    emu = ModbusEmulator(feed, str(prof_path), [1], tcp=("127.0.0.1", 0))
    serve(emu)
    port = emu.tcp[1]
    cfg = ModbusConfig.model_validate(
        {
            "type": "modbus",
            "poll_interval_s": 0.1,
            "down_after_s": 1.5,
            "stale_after_polls": 3,
            "devices": [{"name": "s", "profile": str(prof_path), "tcp": f"127.0.0.1:{port}"}],
        }
    )
    log = EventLog()

    async def scenario():
        drv = ModbusDriver(cfg, DriverContext(emit=log))
        await drv.open()
        try:
            before = await read_until_batch(
                drv, lambda b: len(b) == 4 and np.isfinite(b.temperature_c).all(), 10, "complete rows"
            )
            emu.faults[1] = "exception_input"  # the temperature block now fails, the voltages still answer
            during = await read_until_batch(
                drv, lambda b: len(b) == 4 and np.isnan(b.temperature_c).all(), 10, "temperatures to expire"
            )
            return before, during
        finally:
            await drv.close()

    before, during = asyncio.run(scenario())
    assert all(not (b.flags & Flag.STALE).any() for b in before)
    assert np.isfinite(before[-1].temperature_c).all()
    flags = np.concatenate([b.flags for b in during])
    temps = np.concatenate([b.temperature_c for b in during])
    volts = np.concatenate([b.voltage_v for b in during])
    stale = (flags & Flag.STALE) != 0
    assert stale.any(), "temperatures not refreshed must be flagged STALE"
    assert np.isfinite(temps[stale]).all(), "a stale value is the last one seen"
    assert np.isnan(temps[-4:]).all() and (flags[-4:] & Flag.TEMPERATURE_MISSING).all(), (
        "past down_after a value is no longer reported"
    )
    assert np.isfinite(volts).all(), "the voltage block kept answering"
    assert [e.data["fault"] for e in log.of("driver.device_fault")] == ["exception_4"]
    assert not log.of("driver.device_down"), "a device that answers part of its map is not down"
    assert {(fc, a, n) for (_, fc, a, n) in emu.requests} == {(3, 10, 4), (4, 10, 4)}


def test_rtu_over_a_pty_pair(tmp_path, serve, pty_pair):
    """Two modules on one RS-485 line (a socat pty pair): the agent process stores the served values."""
    pair = pty_pair("rtu")
    feed = RigFeed(basic_rig(32, seed=9), tick_s=0.1, history=1200)
    emu = ModbusEmulator(feed, "bms16", [3, 4], rtu=str(pair.a), baudrate=115200)
    serve(emu)
    line = {"rtu": str(pair.b), "baudrate": 115200}
    cfg = agent_config(
        tmp_path,
        [
            {
                "type": "modbus",
                "name": "line",
                "poll_interval_s": 0.2,
                "timeout_s": 0.3,
                "devices": [_device("r3", 3, **line), _device("r4", 4, **line)],
            }
        ],
    )
    _run_agent_process(tmp_path, cfg, "r4c16", 10)
    _check_served(cfg["store"]["path"], emu, feed, ["r3", "r4"])


def test_rtu_faults_on_a_shared_line(serve, pty_pair):
    pair = pty_pair("rtu")
    feed = RigFeed(basic_rig(32, seed=11), tick_s=0.1, history=1200)
    emu = ModbusEmulator(feed, "bms16", [1, 2], rtu=str(pair.a), baudrate=115200)
    serve(emu)
    line = {"rtu": str(pair.b), "baudrate": 115200}
    cfg = ModbusConfig.model_validate(
        {
            "type": "modbus",
            "poll_interval_s": 0.15,
            "timeout_s": 0.15,
            "down_after_s": 1.0,
            "backoff_max_s": 1.0,
            "devices": [_device("a", 1, **line), _device("b", 2, **line), _device("ghost", 7, **line)],
        }
    )
    log = EventLog()

    async def scenario():
        drv = ModbusDriver(cfg, DriverContext(emit=log))
        await drv.open()
        try:
            base = await collect(drv, 1.5)
            emu.faults[2] = "silent"
            silent = await collect(drv, 2.0)
            emu.faults[2] = "corrupt"  # answers with a broken CRC
            corrupt = await collect(drv, 1.5)
            emu.faults.pop(2)
            await wait_for(lambda: drv.status()["devices"]["b"]["state"] == "up", 5, "b back")
            after = await collect(drv, 1.0)
            return base, silent, corrupt, after, drv.status()
        finally:
            await drv.close()

    base, silent, corrupt, after, status = asyncio.run(scenario())
    rate = _polls(base, "ac") / 1.5
    assert rate > 2
    assert _polls(silent, "ac") / 2.0 > 0.5 * rate, "a silent neighbour must cost the line little (backoff)"
    assert _polls(corrupt, "ac") > 0 and _polls(after, "bc") > 0
    assert {e.data["fault"] for e in log.of("driver.device_fault", "b")} == {"timeout"}
    assert log.of("driver.device_down", "b") and log.of("driver.device_up", "b")
    assert log.of("driver.device_down", "ghost") and status["devices"]["ghost"]["state"] == "down"
    assert not log.of("driver.device_fault", "a")
    ts, vals = feed.served()
    view, tol = emu.cell_view(vals), {f: emu.resolution(f) / 2 for f in FIELDS}
    for b in corrupt + after:
        if b.cells[0].startswith("bc"):
            vals_b = np.column_stack([b.voltage_v, b.current_a, b.temperature_c])
            assert match_served(b.ts_ms[:1], vals_b[:1], ts, view, 16, tol, 1500) == []
