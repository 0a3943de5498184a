"""SQLite store: persistent seq, one transaction per batch, byte cap policy, quarantine of a bad database."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from agent.store import Store
from agent.store.schema import SCHEMA_VERSION
from drivers.base import Event, Flag, ReadingBatch


def batch(n_ticks: int, cells=("a", "b", "c"), t0: int = 1_700_000_000_000, v: float = 3.7) -> ReadingBatch:
    n = len(cells)
    return ReadingBatch.build(
        cells,
        np.tile(np.arange(n), n_ticks),
        np.repeat(t0 + np.arange(n_ticks) * 100, n),
        np.full(n * n_ticks, v),
        np.full(n * n_ticks, -1.5),
        np.full(n * n_ticks, 25.0),
    )


def open_store(path, **kw) -> Store:
    return Store.open(path, **kw)


def test_seq_is_contiguous_persistent_and_never_reused(tmp_path):
    s = open_store(tmp_path / "s.db", keep_sent_s=0)
    assert s.append(batch(10)) == (1, 30)
    assert s.append(batch(5)) == (31, 45)
    s.acker.mark_sent("readings", [(1, 45)])
    s.maintain()  # acknowledged rows go; the counter must not go back
    assert s.conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 0
    s.close()
    s2 = open_store(tmp_path / "s.db")
    assert s2.append(batch(1)) == (46, 48)


def test_values_and_missing_round_trip(tmp_path):
    s = open_store(tmp_path / "s.db")
    b = ReadingBatch.build(("x", "y"), [0, 1], [5, 6], [3.3, np.nan], [1.0, 2.0], [np.nan, 30.0])
    s.append(b, source="drv")
    rows = s.unsent.readings()
    assert rows.seq.tolist() == [1, 2]
    assert rows.voltage_v[0] == 3.3 and np.isnan(rows.voltage_v[1])
    assert rows.flags[1] & Flag.VOLTAGE_MISSING and rows.flags[0] & Flag.TEMPERATURE_MISSING
    assert [s.cell_ids[c] for c in rows.cell.tolist()] == ["x", "y"]


def test_batch_is_one_transaction(tmp_path):
    s = open_store(tmp_path / "s.db")
    s.append(batch(2))
    bad = batch(2)
    v = bad.voltage_v.astype(object)
    v[4] = {"not": "a number"}  # the 5th row cannot be bound: the insert fails after four rows went in
    object.__setattr__(bad, "voltage_v", v)
    with pytest.raises((TypeError, ValueError, sqlite3.Error)):
        s.append(bad)
    assert s.conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 6
    assert s.append(batch(1)) == (7, 9)  # the failed batch consumed no seq


def test_events_and_readings_commit_together(tmp_path):
    s = open_store(tmp_path / "s.db")
    s.append(batch(1), events=[Event("alarm.test", "x", level="alarm")])
    ev = s.unsent.events()
    assert len(ev) == 1 and ev[0]["kind"] == "alarm.test" and ev[0]["seq"] == 1


def test_byte_cap_drops_oldest_unsent_readings_counts_and_never_drops_events(tmp_path):
    cap = 1024 * 1024
    s = open_store(tmp_path / "s.db", max_bytes=cap, keep_sent_s=1e9)
    for k in range(60):
        s.append(batch(200, cells=tuple(f"c{i}" for i in range(8))), events=[Event("test.marker", f"e{k}")])
    assert s.capacity.used_bytes() > cap
    events = s.maintain()
    assert s.capacity.used_bytes() <= cap
    assert any(e.kind == "store.dropped_readings" for e in events)
    st = s.stats()
    total = 60 * 200 * 8
    assert st["dropped_readings"] > 0
    assert st["store_depth_readings"] + st["dropped_readings"] == total  # every reading is either kept or counted
    lo, hi = s.conn.execute("SELECT min(seq), max(seq) FROM readings").fetchone()
    assert hi == total and lo == st["dropped_readings"] + 1  # the oldest went, the newest stayed
    kinds = [e["kind"] for e in s.unsent.events(limit=1000)]
    assert kinds.count("test.marker") == 60 and "store.dropped_readings" in kinds


def test_byte_cap_drops_acknowledged_before_unsent(tmp_path):
    s = open_store(tmp_path / "s.db", max_bytes=1024 * 1024, keep_sent_s=1e9)
    for _ in range(15):
        s.append(batch(200, cells=tuple(f"c{i}" for i in range(8))))
    s.acker.mark_sent("readings", [(1, 24_000)])
    for _ in range(5):
        s.append(batch(200, cells=tuple(f"c{i}" for i in range(8))))
    assert s.capacity.used_bytes() > 1024 * 1024
    s.maintain()
    assert s.capacity.used_bytes() <= 1024 * 1024
    assert s.stats()["dropped_readings"] == 0
    assert s.stats()["store_depth_readings"] == 8_000


def test_garbage_file_is_quarantined_and_a_fresh_store_started(tmp_path):
    p = tmp_path / "s.db"
    p.write_bytes(b"this is not a database" * 1000)
    s = Store.open(p)
    assert [e.kind for e in s.opened] == ["store.quarantined"]
    moved = list(tmp_path.glob("s.db.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b"this is not")
    first, last = s.append(batch(1))
    assert last == first + 2 and first >= 1_700_000_000_000 * 1000  # seq jumps past anything used before
    assert s.unsent.events()[0]["kind"] == "store.quarantined"  # the event is in the fresh store, to be published


def test_flipped_bytes_fail_quick_check_and_are_quarantined(tmp_path):
    p = tmp_path / "s.db"
    s = open_store(p)
    for _ in range(50):
        s.append(batch(100))
    s.close()
    (tmp_path / "s.db.seq").unlink()  # the hint is gone too: the moved file or the clock must keep seq unique
    data = bytearray(p.read_bytes())
    rng = np.random.default_rng(1)
    for off in rng.integers(4096 * 2, len(data), 400):  # leave the header page, corrupt b-tree pages
        data[off] ^= 0xFF
    p.write_bytes(bytes(data))
    s2 = Store.open(p)
    assert s2.opened and s2.opened[0].kind == "store.quarantined"
    assert s2.append(batch(1))[0] > 15_000


def test_newer_schema_is_moved_aside_not_migrated_down(tmp_path):
    p = tmp_path / "s.db"
    s = open_store(p)
    s.conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (SCHEMA_VERSION + 5,))
    s.close()
    s2 = Store.open(p)
    assert s2.opened[0].kind == "store.quarantined" and "newer" in s2.opened[0].message


def test_wal_mode_and_synchronous_setting(tmp_path):
    s = open_store(tmp_path / "s.db", synchronous="NORMAL")
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    s2 = open_store(tmp_path / "t.db")
    assert s2.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL by default


def test_mark_sent_and_read_skip_acknowledged(tmp_path):
    s = open_store(tmp_path / "s.db")
    s.append(batch(10))
    s.acker.mark_sent("readings", [(1, 5), (11, 12)])
    rows = s.unsent.readings(limit=100)
    assert rows.seq.tolist() == [6, 7, 8, 9, 10] + list(range(13, 31))
    assert s.stats()["store_depth_readings"] == 23
    sqlite3.connect(tmp_path / "s.db").execute("SELECT 1").fetchone()  # readable by other connections (WAL)


def test_seq_never_reused_after_quarantine_even_with_a_clock_at_1970(tmp_path):
    p = tmp_path / "s.db"
    s = open_store(p, clock_ms=lambda: 0)
    for _ in range(10):
        s.append(batch(100))  # seq 1..3000
    s.maintain()  # writes the hint file
    for _ in range(5):
        s.append(batch(100))  # seq 3001..4500, after the hint
    s.db.close()  # the process dies: no hint written at close
    p.write_bytes(b"garbage" * 100)  # the old database is unreadable; only the hint is left
    (tmp_path / "s.db-wal").unlink(missing_ok=True)
    s2 = Store.open(p, clock_ms=lambda: 0)
    assert s2.opened[0].kind == "store.quarantined"
    assert s2.append(batch(1))[0] > 4500


def test_the_loop_learns_of_a_commit_whose_caller_was_cancelled(tmp_path):
    """A driver stopped while its batch was being committed: the commit happened, so the worker's loop-side
    counters must show it (the uplink drains by them at shutdown)."""
    import asyncio
    import threading

    from agent.store.worker import StoreWorker

    release = threading.Event()

    def slow_append(store: Store) -> tuple[int, int]:
        release.wait(5)
        return store.append(batch(2))

    async def main() -> None:
        worker = StoreWorker(lambda: Store.open(tmp_path / "s.db"))
        await worker.open()
        task = asyncio.create_task(worker.call(slow_append))
        await asyncio.sleep(0.05)
        task.cancel()  # the caller goes away; the store thread is still committing
        release.set()
        await worker.ping()
        assert worker.committed["readings"] == 6
        await worker.close()

    asyncio.run(main())
