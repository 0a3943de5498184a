"""End to end over real transports: simulator -> agent (separate process) -> mosquitto over mTLS -> subscriber."""

from __future__ import annotations

import json
import sqlite3
import time

import jsonschema
import orjson
import pytest

from agent.uplink.envelope import schema_path
from tests.conftest import RIG, agent_config
from tests.support.waiting import wait_until

SCHEMAS = {
    ("telemetry", 1): "telemetry.v1",
    ("telemetry", 2): "telemetry.v2",
    ("events", 1): "events.v1",
    ("health", 1): "health.v1",
    ("cycles", 1): "cycles.v1",
}


def validate_all(messages: list[tuple[str, bytes]]) -> dict[str, int]:
    """Every message the agent sent must match its JSON Schema and its topic; returns counts by type."""
    validators = {
        k: jsonschema.Draft202012Validator(json.loads(schema_path(v).read_text())) for k, v in SCHEMAS.items()
    }
    counts: dict[str, int] = {}
    for topic, payload in messages:
        doc = orjson.loads(payload)
        assert doc["rig"] == RIG
        assert topic == f"dt/battery-twin/{RIG}/{doc['type']}", topic
        validators[(doc["type"], doc["v"])].validate(doc)
        assert len(payload) <= 128 * 1024
        counts[doc["type"]] = counts.get(doc["type"], 0) + 1
    return counts


def committed(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT coalesce(max(seq), 0) FROM readings").fetchone()[0])


def gaps(seqs: list[int], upto: int) -> list[int]:
    return sorted(set(range(1, upto + 1)) - set(seqs))


@pytest.mark.parametrize("envelope", ["compact", "records"])
def test_every_seq_arrives_and_matches_schema(tmp_path, broker, subscriber, rig_cert, pki, agent_proc, envelope):
    cfg = agent_config(tmp_path, broker, rig_cert, pki, uplink={"envelope": envelope, "message_target_bytes": 4000})
    agent = agent_proc(cfg).start()
    agent.wait_log("uplink connected")
    subscriber.wait_for(lambda: len(set(subscriber.telemetry_seqs())) >= 400, 60, "400 readings at the broker")
    subscriber.wait_for(lambda: subscriber.docs("/health"), 20, "a health message")
    assert agent.stop() == 0, agent.log()[-2000:]
    db = sqlite3.connect(cfg["store"]["path"])
    last_seq = db.execute("SELECT value FROM meta WHERE key='next_seq.readings'").fetchone()[0] - 1
    unsent = db.execute("SELECT count(*) FROM readings WHERE sent=0").fetchone()[0]
    seqs = subscriber.telemetry_seqs()
    # Everything the store holds as sent was seen by the subscriber; nothing committed is missing.
    sent_max = db.execute("SELECT max(seq) FROM readings WHERE sent=1").fetchone()[0]
    assert sent_max and sent_max >= 400
    assert gaps(seqs, sent_max) == []
    assert (
        last_seq - sent_max == unsent or unsent == 0 or gaps(seqs, last_seq) == list(range(sent_max + 1, last_seq + 1))
    )
    counts = validate_all(subscriber.snapshot())
    assert counts["telemetry"] >= 2 and counts["health"] >= 1
    # The values at the broker are the values in the store (within wire resolution).
    by_seq = {
        r["seq"]: r
        for t, p in subscriber.snapshot()
        if t.endswith("/telemetry")
        for r in __import__("agent.uplink.envelope", fromlist=["x"]).decode_telemetry(p)
    }
    rows = db.execute("SELECT seq, voltage_v, current_a, temperature_c, ts_ms FROM readings ORDER BY seq LIMIT 50")
    for seq, v, i, t, ts in rows:
        rec = by_seq[seq]
        assert abs(rec["voltage_v"] - v) <= 6e-5 and abs(rec["current_a"] - i) <= 6e-5
        assert abs(rec["temperature_c"] - t) <= 6e-3 and rec["ts"] == ts


def test_broker_outage_leaves_no_gap(tmp_path, broker, subscriber, rig_cert, pki, agent_proc):
    cfg = agent_config(tmp_path, broker, rig_cert, pki)
    agent = agent_proc(cfg).start()
    agent.wait_log("uplink connected")
    subscriber.wait_for(lambda: len(subscriber.telemetry_seqs()) >= 100, 30, "first readings")
    subscriber.stop()
    broker.stop()
    agent.wait_log("uplink disconnected")
    db = sqlite3.connect(cfg["store"]["path"])
    at_outage = committed(db)
    # The outage: the agent keeps polling and buffering (4 cells at 10 Hz: 200 readings are 5 s of it).
    wait_until(lambda: committed(db) >= at_outage + 200, 30, "readings buffered during the outage")
    assert agent.alive()
    broker.start()
    subscriber.client.start()
    target = committed(db) + 50
    subscriber.wait_for(
        lambda: not gaps(subscriber.telemetry_seqs(), target), 60, f"every seq up to {target} after the outage"
    )
    assert "uplink disconnected" in agent.log() or "cannot connect" in agent.log()
    assert agent.stop() == 0


def test_sigkill_restarts_leave_no_gap_and_never_reuse_seq(tmp_path, broker, subscriber, rig_cert, pki, agent_proc):
    cfg = agent_config(tmp_path, broker, rig_cert, pki)
    agent = agent_proc(cfg)
    for _ in range(4):
        agent.start()
        agent.wait_log("uplink connected" if agent.runs == 1 else f"--- start #{agent.runs}")
        time.sleep(1.5 + 0.3 * agent.runs)  # kill at a different point of the publish/ack cycle each run
        agent.kill()
    db = sqlite3.connect(cfg["store"]["path"])
    before = committed(db)
    agent.start()
    wait_until(lambda: committed(db) > before, 30, "readings committed after the last restart")
    target = committed(db)
    subscriber.wait_for(lambda: not gaps(subscriber.telemetry_seqs(), target), 60, f"every seq up to {target}")
    assert agent.stop() == 0
    # seq never repeats for a different reading: each seq decoded at the broker has one (cell, ts) only.
    seen: dict[int, tuple] = {}
    from agent.uplink.envelope import decode_telemetry

    for t, p in subscriber.snapshot():
        if t.endswith("/telemetry"):
            for r in decode_telemetry(p):
                key = (r["cell"], r["ts"])
                assert seen.setdefault(r["seq"], key) == key, f"seq {r['seq']} used for two readings"
