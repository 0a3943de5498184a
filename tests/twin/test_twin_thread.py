"""The processors' stage (the twin) runs off the event loop, keeps batches in order, and a stopped driver's batch is
still stored. A real agent with its real store; the processor is a small test class that can be held mid-batch."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from types import SimpleNamespace

from agent.config import parse_config
from agent.pipeline import Agent
from agent.validate import Validator
from drivers.base import Event, ReadingBatch


class HeldProcessor:
    """Emits one cycle per batch (its arrival number); batches whose first ts is in ``hold`` wait for ``release``."""

    def __init__(self, hold: set[int]):
        self.hold, self.release, self.entered = hold, threading.Event(), threading.Event()
        self.threads: set[str] = set()
        self.n = 0

    def process(self, batch: ReadingBatch, source: str) -> tuple[list[Event], list[dict]]:
        self.threads.add(threading.current_thread().name)
        ts = int(batch.ts_ms[0])
        if ts in self.hold:
            self.entered.set()
            assert self.release.wait(10.0), "the test never released the held batch"
        self.n += 1
        return [], [{"cell": batch.cells[0], "cycle": self.n, "ts": ts, "source": source}]


def _batch(ts: int) -> ReadingBatch:
    return ReadingBatch.build(("c1",), [0], [ts], [3.7], [0.0], [25.0])


def _stored(db: str) -> tuple[list[tuple[int, int]], int]:
    con = sqlite3.connect(db)
    try:
        cycles = con.execute("SELECT cycle, ts_ms FROM cycles ORDER BY seq").fetchall()
        readings = con.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    finally:
        con.close()
    return cycles, readings


def test_stage_runs_off_the_loop_in_order_and_stores_a_stopped_drivers_batch(tmp_path):
    db = str(tmp_path / "a.db")
    cfg = parse_config({"rig": "r1", "store": {"path": db}, "twin": {"enabled": False}})
    proc = HeldProcessor(hold={1000})

    async def main() -> None:
        agent = Agent(cfg, processors=[proc])
        await agent.worker.open()
        runner = SimpleNamespace(name="sim", validator=Validator(cfg.validate_, "sim"))
        held = asyncio.create_task(agent.ingest(runner, _batch(1000)))
        while not proc.entered.is_set():  # the loop keeps running while the processor works
            await asyncio.sleep(0.001)
        later = [asyncio.create_task(agent.ingest(runner, _batch(ts))) for ts in (2000, 3000)]
        assert not any(t.done() for t in later)
        held.cancel()  # the driver is stopped while its batch is in the twin
        proc.release.set()
        assert await agent.stage.drain(10.0) == 0
        await asyncio.gather(*later)
        await agent.worker.close()
        agent.stage.close()

    asyncio.run(main())
    cycles, readings = _stored(db)
    assert cycles == [(1, 1000), (2, 2000), (3, 3000)], "cycles stored in the order their batches arrived"
    assert readings == 3, "the cancelled driver's batch was stored too"
    assert proc.threads and all(name.startswith("twin") for name in proc.threads), proc.threads
