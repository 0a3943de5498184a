"""Serial instruments: line parsing (golden cases, property tests on random bytes), then a SCPI cycler and a
streaming logger emulated on one end of a socat pty pair and read by the agent on the other, with garbage on the
line, silence, unknown channels, error replies, and the port vanishing under the agent."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import DriverContext, Flag
from drivers.emulator import RigFeed, basic_rig
from drivers.profiles import FIELD_INDEX
from drivers.serial import SerialConfig, SerialDriver
from drivers.serial.emulator import SerialEmulator
from drivers.serial.lines import LineSplitter
from drivers.serial.profile import LineParser, load_profile
from tests.drivers.support import (
    FIELDS,
    EventLog,
    agent_config,
    every_cell_has,
    match_served,
    read_until,
    read_until_batch,
    running_agent,
    stored_events,
    stored_rows,
    to_toml,
    until_cells,
    wait_for,
    wait_until,
)
from tests.support.agentproc import AgentProcess

GOLDEN = Path(__file__).resolve().parents[2] / "drivers" / "serial" / "golden"


def _golden(name):
    doc = json.loads((GOLDEN / f"{name}.json").read_text())
    return [(doc["profile"], c) for c in doc["cases"]]


@pytest.mark.parametrize(
    "profile,case",
    _golden("scpi_cycler") + _golden("stream_logger"),
    ids=lambda x: x if isinstance(x, str) else x["line"][:24],
)
def test_golden_lines(profile, case):
    prof = load_profile(profile)
    fmt = prof.queries[case["query"]] if prof.queries else prof.stream
    got = LineParser(fmt).parse(case["line"])
    if case["expect"] is None:
        assert got is None
        return
    assert got is not None
    channel, values = got
    assert channel == case.get("channel")
    want = {FIELD_INDEX[f]: v for f, v in case["expect"].items()}
    assert set(values) == set(want)
    for k, v in want.items():
        assert math.isnan(values[k]) if v is None else values[k] == pytest.approx(v, rel=1e-12), (k, values)


def test_splitter_resynchronises_after_garbage():
    sp = LineSplitter(b"\r\n", max_line_bytes=16)
    assert sp.feed(b"CH01 V=1 I") == []
    assert sp.feed(b"=2 T=3\r\nCH02") == ["CH01 V=1 I=2 T=3"]
    assert sp.feed(b"\xff\xfe\r\nok\r\n") == ["ok"], "the line with undecodable bytes is dropped"
    assert sp.feed(b"x" * 40) == [] and sp.feed(b"still the same overlong line\r\nnext\r\n") == ["next"]
    assert sp.garbage == 2 and len(sp.buf) == 0


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=80), max_size=12), which=st.sampled_from(["scpi_cycler", "stream_logger"]))
def test_random_bytes_never_raise(chunks, which):
    prof = load_profile(which)
    parsers = [LineParser(q) for q in prof.queries] or [LineParser(prof.stream)]
    sp = LineSplitter(prof.terminator.encode(), prof.max_line_bytes, prof.encoding)
    for chunk in chunks:
        for line in sp.feed(chunk):
            for p in parsers:
                r = p.parse(line)
                assert r is None or all(isinstance(v, float) for v in r[1].values())
        assert len(sp.buf) <= prof.max_line_bytes


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_random_text_lines_never_raise(text):
    for name in ("scpi_cycler", "stream_logger"):
        prof = load_profile(name)
        for fmt in [*prof.queries, *([prof.stream] if prof.stream else [])]:
            LineParser(fmt).parse(text)


def _check_served(
    rows, emu: SerialEmulator, feed: RigFeed, prefix: str, n: int, min_rows: int, window_ms: float = 2000
) -> None:
    ts, vals = feed.served()
    tol = {f: emu.tolerance(f) + 1e-7 for f in FIELDS}
    for k in range(n):
        r = rows[f"{prefix}{k + 1:02d}"]
        ok = (r.flags & (Flag.STALE | 7)) == 0
        assert ok.sum() >= min_rows, f"cell {k + 1}: {ok.sum()} complete fresh rows"
        assert match_served(r.ts_ms[ok], r.values[ok], ts, vals, k, tol, window_ms) == []


def test_scpi_cycler_agent_process_stores_served_values_through_garbage(tmp_path, serve, pty_pair):
    pair = pty_pair("scpi")
    feed = RigFeed(basic_rig(4, seed=6), tick_s=0.1, history=1500)
    emu = SerialEmulator(feed, "scpi_cycler", str(pair.a), channels=[1, 2, 3, 4])
    serve(emu)
    cfg = agent_config(
        tmp_path,
        [
            {
                "type": "serial",
                "name": "cyc",
                "port": str(pair.b),
                "profile": "scpi_cycler",
                "channels": [1, 2, 3, 4],
                "poll_interval_s": 0.25,
                "timeout_s": 0.3,
                "cell_prefix": "cyc-c",
            }
        ],
    )
    proc = AgentProcess(tmp_path / "agent", {"rig": cfg["rig"]})
    proc.config_path.write_text(to_toml(cfg))
    proc.start()
    db = cfg["store"]["path"]
    try:
        proc.wait_log("agent started", 20)
        wait_until(lambda: every_cell_has(db, 4, 6), 30, "6 complete fresh rows per cell")
        emu.fault = "garbage"  # a line of random bytes before every answer
        asked = emu.queries
        wait_until(lambda: emu.queries >= asked + 36, 20, "three polls answered through garbage")
        emu.fault = None
        clean_ms = time.time_ns() // 1_000_000
        wait_until(lambda: every_cell_has(db, 4, 12) and every_cell_has(db, 4, 2, clean_ms), 20, "rows after it")
    finally:
        rc = proc.stop()
    assert rc == 0, proc.log()[-3000:]
    rows = stored_rows(cfg["store"]["path"])
    assert sorted(rows) == ["cyc-c01", "cyc-c02", "cyc-c03", "cyc-c04"]
    _check_served(rows, emu, feed, "cyc-c", 4, min_rows=12)
    assert emu.tolerance("voltage_v") == pytest.approx(5e-4), "NR3 with 6 decimals: 5e-7 relative, <1000"
    assert "driver failed" not in proc.log()


def test_scpi_faults_per_channel_and_instrument(serve, pty_pair):
    pair = pty_pair("scpi")
    feed = RigFeed(basic_rig(3, seed=2), tick_s=0.1, history=1500)
    emu = SerialEmulator(feed, "scpi_cycler", str(pair.a), channels=[1, 2, 3])
    serve(emu)
    cfg = SerialConfig.model_validate(
        {
            "type": "serial",
            "name": "cyc",
            "port": str(pair.b),
            "profile": "scpi_cycler",
            "channels": [1, 2, 3, 9],
            "poll_interval_s": 0.15,
            "timeout_s": 0.15,
            "down_after_s": 0.8,
            "backoff_max_s": 0.6,
        }
    )
    log = EventLog()

    async def scenario():
        drv = SerialDriver(cfg, DriverContext(emit=log))
        await drv.open()
        three = {"cyc-c01", "cyc-c02", "cyc-c03"}
        try:
            phases = {"ok": await read_until_batch(drv, until_cells(three), 10, "every answering channel")}
            await read_until(drv, lambda: drv.channel_health[3].state == "down", 10, "channel 9 reported down")
            for mode in ("silent", "error", "truncate"):
                emu.fault = mode
                phases[mode] = await read_until(drv, lambda: drv.health.state == "down", 10, f"down while {mode}")
                emu.fault = None
                await read_until(drv, lambda: drv.health.state == "up", 5, f"instrument back after {mode}")
                phases[f"after {mode}"] = await read_until_batch(
                    drv, until_cells(three), 5, f"every channel after {mode}"
                )
            return phases, drv.status()
        finally:
            await drv.close()

    phases, status = asyncio.run(scenario())
    for name, batches in phases.items():
        if name == "ok" or name.startswith("after"):
            cells = {b.cells[i] for b in batches for i in np.unique(b.cell)}
            assert cells == {"cyc-c01", "cyc-c02", "cyc-c03"}, (name, cells)
    assert status["channels"]["cyc:ch9"] == "down" and status["channels"]["cyc:ch1"] == "up"
    assert [e.kind for e in log.events if e.data.get("device") == "cyc:ch9"][:2] == [
        "driver.device_fault",
        "driver.device_down",
    ]
    inst = [e.kind for e in log.events if e.data.get("device") == "cyc"]
    assert inst.count("driver.device_down") == 3 and inst.count("driver.device_up") == 3
    faults = {e.data["fault"] for e in log.events if e.kind == "driver.device_fault"}
    assert {"timeout", "garbage"} <= faults, faults
    ts, vals = feed.served()
    tol = {f: emu.tolerance(f) + 1e-7 for f in FIELDS}
    for batches in phases.values():
        for b in batches:
            v = np.column_stack([b.voltage_v, b.current_a, b.temperature_c])
            for r in range(len(b)):
                if not b.flags[r] & (Flag.STALE | 7):
                    assert (
                        match_served(
                            b.ts_ms[r : r + 1], v[r : r + 1], ts, vals, int(b.cells[b.cell[r]][-2:]) - 1, tol, 2000
                        )
                        == []
                    )


def test_stream_logger_through_garbage(tmp_path, serve, pty_pair):
    pair = pty_pair("log")
    feed = RigFeed(basic_rig(3, seed=12), tick_s=0.2, history=800)
    emu = SerialEmulator(feed, "stream_logger", str(pair.a), channels=[4, 5, 6])
    serve(emu)
    cfg = agent_config(
        tmp_path,
        [
            {
                "type": "serial",
                "name": "log",
                "port": str(pair.b),
                "profile": "stream_logger",
                "channels": [4, 5, 6],
                "sample_hz": 4,
                "cell_prefix": "l-c",
            }
        ],
    )
    db = cfg["store"]["path"]

    def unparsable() -> bool:
        return any(e["kind"] == "driver.device_fault" and "unparsable" in e["message"] for e in stored_events(db))

    async def scenario():
        async with running_agent(cfg):
            await wait_for(lambda: every_cell_has(db, 3, 4), 15, "complete fresh rows for every cell")
            emu.fault = "garbage"
            await wait_for(unparsable, 15, "the garbage reported")
            emu.fault = None
            clean_ms = time.time_ns() // 1_000_000
            await wait_for(
                lambda: every_cell_has(db, 3, 12) and every_cell_has(db, 3, 2, clean_ms), 15, "rows after the garbage"
            )

    asyncio.run(scenario())
    rows = stored_rows(db)
    assert sorted(rows) == ["l-c01", "l-c02", "l-c03"]
    _check_served(rows, emu, feed, "l-c", 3, min_rows=12, window_ms=1500)
    assert any(e["kind"] == "driver.device_fault" and "unparsable" in e["message"] for e in stored_events(db))


def test_port_vanishing_restarts_the_driver_which_recovers(tmp_path, serve, pty_pair):
    """socat dies (the USB adapter is pulled): the driver raises, the supervisor retries with backoff, and the
    agent reads again once the port is back."""
    pair = pty_pair("usb")
    feed = RigFeed(basic_rig(2, seed=1), tick_s=0.1)
    emu = SerialEmulator(feed, "scpi_cycler", str(pair.a), channels=[1, 2])
    bg = serve(emu)
    cfg = agent_config(
        tmp_path,
        [
            {
                "type": "serial",
                "name": "cyc",
                "port": str(pair.b),
                "profile": "scpi_cycler",
                "channels": [1, 2],
                "poll_interval_s": 0.2,
                "timeout_s": 0.2,
            }
        ],
    )
    db = cfg["store"]["path"]

    def count():
        return sum(len(r.ts_ms) for r in stored_rows(db).values()) if Path(db).exists() else 0

    async def scenario():
        async with running_agent(cfg) as agent:
            await wait_for(lambda: count() >= 6, 10, "first rows")
            pair.stop()
            await wait_for(lambda: agent.runners["cyc"].restarts >= 1, 10, "the driver to fail and restart")
            await wait_for(lambda: agent.runners["cyc"].restarts >= 2, 10, "a retry while the port is still gone")
            pair.start()
            await asyncio.to_thread(bg.restart_server)
            n = count()
            await wait_for(lambda: count() >= n + 6, 15, "rows after the port came back")
            await wait_for(lambda: count() >= n + 12, 15, "rows still coming")
            return agent.runners["cyc"].state

    assert asyncio.run(scenario()) == "running"
    faults = [e for e in stored_events(db) if e["kind"] == "driver.fault"]
    assert faults and "serial port" in faults[0]["message"]
