"""Follow mode end to end: a test writes a Neware export line by line while the agent (a separate process, with the
``cycler`` driver and the uplink to mosquitto over mTLS) follows it. On the way: a half-written line, an agent
SIGKILL with rows written while it is down, and a rewrite of the whole file by the "cycler software". At the
broker every row arrives (after dedup on seq, since a kill re-sends unacknowledged messages), once, in file
order, with seqs that have no gap and no reuse; the store holds each row once and the events say what happened.
The twin takes the cycler's cycle numbers: cycle 1 (open across the kill, rebuilt from the store, and read again
in the rewrite) is summarised once, as the import path computes it, and the sign tracker adds no cycle."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from agent.twin.filecycles import summarise
from drivers.cycler.readers import open_source
from tests.conftest import agent_config
from tests.cycler.test_golden import DATA
from tests.support.waiting import wait_until

ROWS = 3600  # cycle 1 ends at row 3463: the kill and the rewrite fall inside it, its summary comes after them


def _stored(db: Path) -> int:
    """Rows committed from the file (the ledger's count: acknowledged readings of 2022 leave the store at once)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return int(c.execute("SELECT coalesce(sum(rows), 0) FROM import_ledger").fetchone()[0])
    except sqlite3.Error:
        return 0


def _events(db: Path) -> list[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return [r[0] for r in c.execute("SELECT kind FROM events ORDER BY seq")]


def test_follow_half_line_kill_and_rewrite(tmp_path, broker, subscriber, rig_cert, pki, agent_proc):
    lines = (DATA / "neware_uio.csv").read_bytes().splitlines(keepends=True)[: ROWS + 1]
    expected, _ = open_source(DATA / "neware_uio.csv", "n1", "neware", "UTC").poll()
    assert expected is not None
    want_ts = expected.ts_ms[:ROWS].tolist()
    run = tmp_path / "channel1.csv"
    run.write_bytes(b"".join(lines[:301]))  # header and 300 rows
    driver = {
        "type": "cycler",
        "name": "bts",
        "files": [{"path": str(run), "cell": "n1", "format": "neware"}],
        "tz": "UTC",
        "poll_interval_s": 0.1,
        "state_path": str(tmp_path / "cycler-state.json"),
    }
    cfg = agent_config(tmp_path, broker, rig_cert, pki, drivers=[driver], store={"keep_sent_s": 1e10})
    db = Path(cfg["store"]["path"])
    agent = agent_proc(cfg).start()
    agent.wait_started()
    wait_until(lambda: _stored(db) == 300, 30, "the first 300 rows stored")

    with run.open("ab") as f:  # a half line: nothing of it may be read until its newline comes
        f.write(b"".join(lines[301:600]) + lines[600][:25])
    wait_until(lambda: _stored(db) == 599, 30, "rows up to the half line")
    with run.open("ab") as f:
        f.write(lines[600][25:] + b"".join(lines[601:900]))
    wait_until(lambda: _stored(db) >= 700, 30, "rows after the half line")

    agent.kill()  # SIGKILL mid-stream: rows may be committed and not yet acknowledged, or read and not stored
    with run.open("ab") as f:
        f.write(b"".join(lines[900:1200]))  # written while the agent is down
    agent.start()
    agent.wait_started()
    wait_until(lambda: _stored(db) == 1199, 60, "every row up to the restart")

    # the cycler software rewrites the file (same test, same head), first shorter than what was read, then whole:
    # it is read again from its top, and nothing is stored twice
    run.write_bytes(b"".join(lines[:1001]))
    wait_until(lambda: "cycler.file_rewritten" in _events(db), 30, "the rewrite noticed")
    run.write_bytes(b"".join(lines[: ROWS + 1]))
    wait_until(lambda: _stored(db) == ROWS, 60, "every row after the rewrite")

    def all_at_broker() -> bool:
        return len(set(subscriber.telemetry_seqs())) >= ROWS

    wait_until(all_at_broker, 60, "every row at the broker")
    agent.stop()

    records = {}
    for topic, payload in subscriber.snapshot():
        if topic.endswith("/telemetry"):
            from agent.uplink.envelope import decode_telemetry

            for r in decode_telemetry(payload):
                assert records.setdefault(r["seq"], r) == r, "a seq re-sent must carry the same reading"
    seqs = sorted(records)
    assert seqs == list(range(1, ROWS + 1)), "seq audit: no gap, no reuse"
    assert [records[s]["ts"] for s in seqs] == want_ts, "every row once, in file order"
    assert {records[s]["cell"] for s in seqs} == {"n1"}
    assert [records[s]["cycle_no"] for s in seqs] == expected.cycle_no[:ROWS].tolist(), (
        "the cycler's numbers on the wire"
    )
    kinds = _events(db)
    assert "cycler.file_rewritten" in kinds
    assert "alarm.sensor_dropout" not in kinds, "a file without a temperature column has no temperature to miss"
    with sqlite3.connect(db) as c:
        assert [r[0] for r in c.execute("SELECT ts_ms FROM readings ORDER BY seq")] == want_ts
        assert c.execute("SELECT max(cycle_no), max(step_no) FROM readings").fetchone()[0] >= 1
        cycles = [json.loads(r[0]) for r in c.execute("SELECT payload FROM cycles ORDER BY seq")]
    e = expected.select(np.arange(len(expected)) < ROWS)
    want = summarise("n1", e.cycle_no, e.ts_ms, e.current_a, e.voltage_v, e.temperature_c, e.step_no)
    assert [(x["cell"], x["cycle"]) for x in cycles] == [("n1", 1)] == [("n1", w["cycle"]) for w in want]
    assert cycles[0]["discharge_ah"] == pytest.approx(want[0]["discharge_ah"], rel=1e-6, abs=6e-7)
    assert (cycles[0]["start_ts"], cycles[0]["ts"]) == (want[0]["start_ts"], want[0]["ts"])


def test_imported_test_flows_through_the_uplink(tmp_path, broker, subscriber, rig_cert, pki, agent_proc):
    """An imported PEC test, with its original timestamps and cycle summaries, is drained by an agent that has no
    driver at all: every row once at the broker (seqs 1..N), the cycles with the cycler's cycle numbers."""
    from agent.importer import import_file
    from agent.store import Store

    cfg = agent_config(tmp_path, broker, rig_cert, pki, drivers=[])
    db = Path(cfg["store"]["path"])
    db.parent.mkdir(parents=True)
    store = Store.open(db)
    done = import_file(store, DATA / "pec.csv", "pec-1", "auto", "America/Denver")
    store.close()
    assert done.rows_added == 16255 and done.cycles_added == 2
    agent = agent_proc(cfg).start()
    agent.wait_started()
    wait_until(lambda: len(set(subscriber.telemetry_seqs())) >= 16255, 90, "the imported rows at the broker")
    wait_until(lambda: len(subscriber.docs("/cycles")) >= 1, 30, "the cycle summaries at the broker")
    agent.stop()
    assert sorted(set(subscriber.telemetry_seqs())) == list(range(1, 16256))
    cycles = [c for doc in subscriber.docs("/cycles") for c in doc["cycles"]]
    assert sorted(c["cycle"] for c in cycles) == [0, 1] and {c["cell"] for c in cycles} == {"pec-1"}
    assert cycles[-1]["discharge_ah"] > 40  # the file's own record: 44.35 Ah in cycle 1
