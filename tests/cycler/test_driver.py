"""The cycler driver on its own (no agent): a missing file, garbage lines, a file replaced by a different test, a
checkpoint after a restart, and a bad config. Events are what a person would see; rows are what the store gets."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from drivers.base import DriverContext, Event
from drivers.cycler import CyclerConfig, CyclerDriver
from drivers.cycler.readers import NativeSource
from tests.cycler.test_golden import DATA

LINES = (DATA / "neware_uio.csv").read_bytes().splitlines(keepends=True)
PEC = (DATA / "pec.csv").read_bytes()


def _driver(tmp_path: Path, run: Path, events: list[Event], fmt: str = "auto", rows: int = 5000) -> CyclerDriver:
    cfg = CyclerConfig(
        type="cycler",
        name="bts",
        files=[{"path": str(run), "cell": "c1", "format": fmt}],
        poll_interval_s=0.01,
        down_after_s=3600,
        state_path=str(tmp_path / "state.json"),
        max_batch_rows=rows,
    )
    return CyclerDriver(cfg, DriverContext(emit=events.append))


async def _read(drv: CyclerDriver, timeout_s: float = 10.0):
    return await asyncio.wait_for(drv.read(), timeout_s)


def test_missing_file_garbage_and_a_replaced_test(tmp_path):
    run = tmp_path / "ch1.csv"
    events: list[Event] = []

    async def scenario():
        drv = _driver(tmp_path, run, events)
        await drv.open()
        polled = asyncio.create_task(drv.read())
        await asyncio.sleep(0.2)  # the file does not exist yet: one event, no crash, still waiting
        assert not polled.done()
        assert [e.kind for e in events] == ["cycler.file_fault"] and "does not exist" in events[0].message
        run.write_bytes(b"".join(LINES[:51]) + b"garbage,,,\n\x00\xff junk\n" + b"".join(LINES[51:101]))
        first = await asyncio.wait_for(polled, 10)
        assert len(first) == 100 and first.origin is not None
        assert first.origin.row.tolist() == [*range(50), *range(52, 102)]  # the garbage lines keep their numbers
        bad = [e for e in events if e.kind == "cycler.bad_rows"]
        assert len(bad) == 1 and bad[0].data["rows"] == [50, 51]
        # another test replaces the file (a different head): its rows come under a new ledger key, with an event
        run.write_bytes(PEC)
        got, keys = 0, set()
        while got < 16255:  # in slices of max_batch_rows
            other = await _read(drv)
            assert other.origin is not None and len(other) <= 5000
            got += len(other)
            keys.add(other.origin.key)
        assert got == 16255 and len(keys) == 1 and first.origin.key not in keys
        assert any(e.kind == "cycler.file_replaced" for e in events)
        await drv.close()

    asyncio.run(scenario())


def test_checkpoint_resumes_after_the_last_stored_batch(tmp_path):
    run = tmp_path / "ch1.csv"
    run.write_bytes(b"".join(LINES[:201]))
    events: list[Event] = []

    async def first_run():
        drv = _driver(tmp_path, run, events)
        await drv.open()
        b = await _read(drv)
        assert len(b) == 200
        with run.open("ab") as f:
            f.write(b"".join(LINES[201:301]))
        b2 = await _read(drv)  # asking again means the first batch was stored: its checkpoint is written now
        assert b2.origin is not None and b2.origin.row[0] == 200
        await drv.close()  # killed before the second batch was stored: no checkpoint for it

    async def second_run():
        drv = _driver(tmp_path, run, events)
        await drv.open()
        b = await _read(drv)
        assert b.origin is not None
        assert b.origin.row[0] == 200 and len(b) == 100  # from the checkpoint, not the top; the ledger drops repeats
        np.testing.assert_allclose(b.voltage_v[:2], [2.9405, 2.9406])  # data lines 201, 202 of the file
        await drv.close()

    asyncio.run(first_run())
    asyncio.run(second_run())


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValidationError, match="own cell id"):
        CyclerConfig(type="cycler", files=[{"path": "a", "cell": "x"}, {"path": "b", "cell": "x"}])
    with pytest.raises(ValidationError, match="Nowhere"):
        CyclerConfig(type="cycler", files=[{"path": "a", "cell": "x"}], tz="Mars/Nowhere")
    with pytest.raises(ValidationError, match="format"):
        CyclerConfig(type="cycler", files=[{"path": "a", "cell": "x", "format": "excel"}])


def test_bdf_without_a_start_is_an_event_not_a_crash(tmp_path):
    run = tmp_path / "bdf.csv"
    run.write_bytes((DATA / "batmo_bdf.csv").read_bytes()[:5000])
    events: list[Event] = []

    async def scenario():
        drv = _driver(tmp_path, run, events)
        await drv.open()
        task = asyncio.create_task(drv.read())
        await asyncio.sleep(0.2)
        assert not task.done()
        task.cancel()
        await drv.close()

    asyncio.run(scenario())
    assert [e.kind for e in events] == ["cycler.file_fault"] and "start" in events[0].message


def test_a_long_native_file_comes_in_slices(tmp_path):
    """The twin runs on the event loop: a catch-up on a long file is handed over in bounded batches, in order."""
    events: list[Event] = []

    async def scenario():
        drv = _driver(tmp_path, DATA / "biol.mpr", events, rows=10_000)
        await drv.open()
        sizes, first_rows = [], []
        for _ in range(3):
            b = await _read(drv)
            assert b.origin is not None
            sizes.append(len(b))
            first_rows.append(int(b.origin.row[0]))
        await drv.close()
        return sizes, first_rows

    assert asyncio.run(scenario()) == ([10_000, 10_000, 3_561], [0, 10_000, 20_000])
    assert not events


def test_native_rereads_wait_for_the_minimum_gap(tmp_path):
    """A native file is read whole on change; a cycler rewriting it every few seconds costs one read per gap.
    The clock is the source's own (injected: the gap is a minute, the test does not wait one)."""
    f = tmp_path / "run.mpr"
    f.write_bytes((DATA / "biol.mpr").read_bytes())
    now = [1000.0]
    src = NativeSource(f, "c1", "biologic", "UTC", min_reread_s=60.0, clock=lambda: now[0])

    def touch() -> None:
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    parsed, _ = src.poll()
    assert parsed is not None and len(parsed) == 23561 and src.reads == 1
    touch()
    now[0] += 10
    assert src.poll()[0] is None and src.reads == 1 and not src.finished  # changed, inside the gap: not read
    now[0] += 51
    assert src.poll()[0] is None and src.reads == 2  # the gap passed: read again, no row handed out twice
    touch()
    assert src.poll(final=True)[0] is None and src.reads == 3  # import reads a finished file whatever the gap


def test_native_reread_gap_is_validated():
    base = {"type": "cycler", "files": [{"path": "a.mpr", "cell": "x"}]}
    assert CyclerConfig(**base).native_min_reread_s == 60.0
    with pytest.raises(ValidationError, match="native_min_reread_s"):
        CyclerConfig(**base, native_min_reread_s=-1)
    with pytest.raises(ValidationError, match="below down_after_s"):
        CyclerConfig(**base, native_min_reread_s=700, down_after_s=600)
    assert CyclerConfig(**base, native_min_reread_s=0).native_min_reread_s == 0  # every poll, as before
