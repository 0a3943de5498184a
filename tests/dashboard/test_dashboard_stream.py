"""The stream's contract without a browser: incremental by seq, resumable, bounded, on a read-only connection.

A real Store (SQLite in WAL mode) is written here while the dashboard's reader reads it, as in the agent.
"""

from __future__ import annotations

import sqlite3
import time
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from agent.config import parse_config
from agent.dashboard.hub import QUEUE_TICKS, Hub
from agent.dashboard.reader import StoreReader
from agent.pipeline import Agent
from agent.store import Store
from drivers.base import ReadingBatch
from tests.dashboard.conftest import run_async

CELLS = ("a1", "a2", "a3")


def batch(t0_ms: int, ticks: int, step_ms: int = 1000) -> ReadingBatch:
    n = len(CELLS)
    ts = np.repeat(t0_ms + step_ms * np.arange(ticks, dtype=np.int64), n)
    cell = np.tile(np.arange(n), ticks)
    k = np.arange(ticks * n, dtype=np.float64)
    return ReadingBatch.build(CELLS, cell, ts, 3.0 + k * 1e-3, -1.0 - k * 1e-3, 25.0 + k * 1e-2)


def parse(msg: bytes) -> tuple[int | None, str, dict]:
    lines = msg.decode().strip().split("\n")
    fields = dict(line.split(": ", 1) for line in lines if not line.startswith(":"))
    return (int(fields["id"]) if "id" in fields else None), fields["event"], orjson.loads(fields["data"])


@pytest.fixture()
def agent(tmp_path):
    """The store, written directly as the agent's store thread would, and an (unstarted) agent as the hub's
    ``AgentControl``."""
    cfg = parse_config({"rig": "r1", "store": {"path": str(tmp_path / "s.db")}, "dashboard": {"enabled": True}})
    a = SimpleNamespace(cfg=cfg, store=Store.open(cfg.store.path), control=Agent(cfg))
    yield a
    a.store.close()


def test_seq_at_and_thinning(agent):
    now = time.time_ns() // 1_000_000
    agent.store.append(batch(now - 600_000, 600))  # 10 minutes at 1 Hz, 3 cells
    rd = StoreReader(agent.cfg.store.path)
    try:
        db = sqlite3.connect(agent.cfg.store.path)
        for back_s in (0, 1, 59, 300, 599, 600, 10_000):
            cutoff = now - back_s * 1000
            want = db.execute(
                "SELECT coalesce(min(seq), (SELECT max(seq) + 1 FROM readings)) - 1 FROM readings WHERE ts_ms >= ?",
                (cutoff,),
            ).fetchone()[0]
            assert rd.seq_at(cutoff) == want, back_s
        r = rd.readings_for_cells([1, 3], 0, 10**9, max_per_cell=100)
        for idx in (1, 3):
            mine = r.seq[r.cell == idx]
            assert 90 <= len(mine) <= 100
            newest = db.execute("SELECT max(seq) FROM readings WHERE cell = ?", (idx,)).fetchone()[0]
            assert mine[-1] == newest  # thinning keeps the newest point
        assert not np.isin(r.cell, [2]).any()
        with pytest.raises(sqlite3.OperationalError):  # read-only: cannot write even by mistake
            rd.conn.execute("DELETE FROM readings")
    finally:
        rd.close()


def test_stream_is_incremental_resumable_and_bounded(agent):
    async def main() -> None:
        now = time.time_ns() // 1_000_000
        agent.store.append(batch(now - 20_000, 10))  # seq 1..30
        rd = StoreReader(agent.cfg.store.path)
        hub = Hub(agent.control, rd, agent.cfg.dashboard)
        try:
            sub, init = await hub.subscribe(["a2"], None)
            id_, ev, d = parse(init)
            assert ev == "init" and id_ == 30 and d["selected"] == ["a2"] and not d["resumed"]
            assert d["readings"]["seq"] == list(range(2, 31, 3))  # a2's rows only, whole window
            assert d["health"]["store_depth_readings"] == 30 and d["health"]["uplink_state"] == "off"

            agent.store.append(batch(now - 10_000, 5))  # seq 31..45
            await hub.tick()
            id_, ev, d = parse(sub.queue.get_nowait())
            assert ev == "tick" and id_ == 45 and d["seq"] == 45
            assert d["readings"]["seq"] == [32, 35, 38, 41, 44]  # only what is new, only a2
            assert d["shared"]["latest"]["seq"] == [43, 44, 45]  # newest of every cell, for the picker
            await hub.tick()  # nothing new: an empty tick, no history again
            assert parse(sub.queue.get_nowait())[2]["readings"]["seq"] == []

            # A browser that lost the connection resumes from its Last-Event-ID: only the gap comes.
            resumed, init2 = await hub.subscribe(["a2"], 30)
            d2 = parse(init2)[2]
            assert d2["resumed"] and d2["readings"]["seq"] == [32, 35, 38, 41, 44]

            # A browser that stops reading is dropped after QUEUE_TICKS messages, not buffered forever; one that
            # keeps reading stays.
            for _ in range(QUEUE_TICKS + 1):
                await hub.tick()
                while not resumed.queue.empty():
                    assert resumed.queue.get_nowait() is not None
            assert sub.dropped and sub not in hub.subs
            drained = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
            assert drained == [None]
            assert resumed in hub.subs and not resumed.dropped
        finally:
            hub.close()
            rd.close()

    run_async(main())


def test_store_replaced_by_quarantine_restarts_the_views(agent):
    async def main() -> None:
        now = time.time_ns() // 1_000_000
        agent.store.append(batch(now - 20_000, 10))  # seq 1..30 in the old file
        rd = StoreReader(agent.cfg.store.path)
        hub = Hub(agent.control, rd, agent.cfg.dashboard)
        try:
            sub, _ = await hub.subscribe(["a1"], None)
            agent.store.reopen_fresh("test: corrupt")  # a new file (its seqs start again from a floor)
            first, last = agent.store.append(batch(now - 5_000, 4))  # 12 readings in the new file
            await hub.tick()
            assert sub.queue.get_nowait() is None and not hub.subs  # the browser is told to start over
            _again, init = await hub.subscribe(["a1"], 30)  # EventSource reconnects with its old Last-Event-ID
            d = parse(init)[2]
            assert not d["resumed"] and d["readings"]["seq"] == list(range(first, last + 1, 3))
            assert any(e["kind"] == "store.quarantined" for e in d["events"])
        finally:
            hub.close()
            rd.close()

    run_async(main())
