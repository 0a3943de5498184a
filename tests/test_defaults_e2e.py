"""The defaults a user deploys (issue 18), end to end against the test mosquitto as the agent publishes to IoT Core:

- telemetry lingers up to ``uplink.linger_ms`` (two minutes) to fill its 5 KB units, yet the local dashboard stays
  live (it reads the store, not the cloud) and events go out at once (they never wait for the telemetry linger);
- the uplink fills messages as bench/cloud_cost.py prices them;
- health goes out on change plus a heartbeat, through the Basic Ingest topic when one is configured.
"""

from __future__ import annotations

import http.client
import itertools
import json
import sqlite3
import time

import jsonschema
import orjson

from agent.config import UplinkConfig
from agent.uplink.envelope import decode_telemetry, schema_path
from bench.cloud_cost import KB5, message
from tests.conftest import RIG, agent_config
from tests.dashboard.conftest import dashboard_port
from tests.support.subscriber import Subscriber

DEFAULT_RIG = [{"type": "simulator", "name": "sim", "cells": 8}]  # the default config's rig: 8 cells at 1 Hz


def user_defaults(cfg: dict) -> dict:
    """Drop the test suite's fast uplink settings: linger, message size and health cadence as shipped."""
    for key in ("linger_ms", "health_interval_s", "health_heartbeat_s", "message_target_bytes"):
        cfg["uplink"].pop(key, None)
    return cfg


def sse_messages(resp, until, timeout_s: float = 30.0) -> list[tuple[str, dict]]:
    """Read server-sent events until ``until(messages)`` holds (bounded by timeout_s)."""
    buf, out = b"", []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        buf += resp.read1(65536)
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            lines = dict(ln.split(b": ", 1) for ln in block.split(b"\n") if b": " in ln)
            if b"event" in lines and b"data" in lines:
                out.append((lines[b"event"].decode(), orjson.loads(lines[b"data"])))
        if until(out):
            return out
    raise AssertionError(f"dashboard stream: condition not met within {timeout_s:.0f} s ({len(out)} messages)")


def telemetry(subscriber) -> list[bytes]:
    return [p for t, p in subscriber.snapshot() if t.endswith("/telemetry")]


def test_defaults_keep_the_dashboard_live_and_events_immediate(tmp_path, broker, subscriber, rig_cert, pki, agent_proc):
    assert UplinkConfig().linger_ms >= 60_000, "this test is about a long default linger"
    cfg = user_defaults(
        agent_config(
            tmp_path,
            broker,
            rig_cert,
            pki,
            drivers=DEFAULT_RIG,
            dashboard={"enabled": True, "port": 0},
            twin={"alarms": {"max_temperature_c": 15.0}},  # the simulated cells run warmer: an alarm at once
        )
    )
    agent = agent_proc(cfg).start()
    port = dashboard_port(agent)
    agent.wait_log("uplink connected")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/api/stream?cells=c01")
    resp = conn.getresponse()
    assert resp.status == 200

    def live(msgs) -> bool:
        seqs = {s for e, d in msgs if e == "tick" for s in d["readings"]["seq"]}
        return len(seqs) >= 3  # three new readings of c01 pushed live, one per simulated second

    msgs = sse_messages(resp, live)
    conn.close()
    # The over-temperature alarm reached the broker ...
    subscriber.wait_for(
        lambda: any(e["kind"] == "alarm.over_temperature" for d in subscriber.docs("/events") for e in d["events"]),
        30,
        "alarm.over_temperature at the broker",
    )
    # ... while the telemetry of the same seconds still lingers in the store: the event did not wait for it, and
    # the dashboard did not either.
    assert not telemetry(subscriber), "a telemetry message went out before the linger or a full message"
    db = sqlite3.connect(cfg["store"]["path"])
    unsent = db.execute("SELECT count(*) FROM readings WHERE sent = 0").fetchone()[0]
    assert unsent >= 8 * 3, unsent
    assert any(e == "init" for e, _ in msgs)
    # Stopping sends what lingered: nothing the store committed is left behind.
    assert agent.stop() == 0, agent.log()[-2000:]
    last = db.execute("SELECT max(seq) FROM readings").fetchone()[0]
    seqs = {r["seq"] for p in telemetry(subscriber) for r in decode_telemetry(p)}
    assert seqs >= set(range(1, last + 1)) - {s for (s,) in db.execute("SELECT seq FROM readings WHERE sent = 0")}
    assert db.execute("SELECT count(*) FROM readings WHERE sent = 0").fetchone()[0] == 0


def test_the_uplink_fills_messages_as_the_cost_model_prices_them(
    tmp_path, broker, subscriber, rig_cert, pki, agent_proc
):
    # Simulated time runs 20 times faster than the wall clock, so four full messages take seconds; the messages
    # hold the same 1 Hz readings (timestamps one second apart) as on a real rig.
    drivers = [{**DEFAULT_RIG[0], "speed": 20.0}]
    cfg = user_defaults(agent_config(tmp_path, broker, rig_cert, pki, drivers=drivers))
    agent = agent_proc(cfg).start()
    subscriber.wait_for(lambda: len(telemetry(subscriber)) >= 5, 90, "five telemetry messages")
    assert agent.stop() == 0
    full = telemetry(subscriber)[1:5]  # the first one may have started mid-batch; the last one is the shutdown's
    d = UplinkConfig()
    n_model, _size_model = message(8, 1.0, "compact", d.message_target_bytes, d.linger_ms)
    topic_b = len(f"dt/battery-twin/{RIG}/telemetry")
    for p in full:
        n = len(decode_telemetry(p))
        assert abs(n - n_model) <= 0.05 * n_model, (n, n_model)
        units = -(-(len(p) + topic_b) // KB5)
        assert units == 3 and (len(p) + topic_b) / (units * KB5) >= 0.93, (len(p), units)
        assert len(p) <= d.message_target_bytes


def test_health_goes_out_on_change_plus_heartbeat_through_basic_ingest(
    tmp_path, broker, subscriber, rig_cert, pki, agent_proc
):
    cert, key = pki.issue("test-rules-subscriber")
    rules = Subscriber(broker.port, pki.ca_cert, cert, key, topic="$aws/rules/#", client_id="rules").start()
    try:
        cfg = agent_config(
            tmp_path,
            broker,
            rig_cert,
            pki,
            uplink={"health_interval_s": 1.0, "health_heartbeat_s": 3.0, "basic_ingest_health_rule": "bt_health"},
        )
        agent = agent_proc(cfg).start()
        rules.wait_for(
            lambda: sum(orjson.loads(p)["reason"] == "heartbeat" for _, p in rules.snapshot()) >= 3,
            40,
            "three heartbeats",
        )
        assert agent.stop() == 0
    finally:
        rules.stop()
    validator = jsonschema.Draft202012Validator(json.loads(schema_path("health.v1").read_text()))
    msgs = rules.snapshot()
    assert {t for t, _ in msgs} == {f"$aws/rules/bt_health/dt/battery-twin/{RIG}/health"}
    assert not subscriber.docs("/health"), "health also went to the broker topic"
    docs = [orjson.loads(p) for _, p in msgs]
    for d in docs:
        validator.validate(d)
    assert docs[0]["reason"] == "start"
    beats = [d for d in docs if d["reason"] == "heartbeat"]
    # Heartbeats one heartbeat apart by the agent's own clock (uptime), not one per 1 s check; rates over them.
    for a, b in itertools.pairwise(beats):
        assert b["uptime_s"] - a["uptime_s"] >= 3.0 - 0.6, (a["uptime_s"], b["uptime_s"])
    assert all(b["rate_window_s"] >= 3.0 - 0.6 and b["readings_rate_s"] > 0 for b in beats[1:])
