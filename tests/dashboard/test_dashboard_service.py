"""The dashboard as a service of the agent: its failures never cost data, and it never holds up a shutdown."""

from __future__ import annotations

import http.client
import socket
import sqlite3
import time

from tests.conftest import agent_config
from tests.dashboard.conftest import dashboard_port

SIM = [{"type": "simulator", "name": "sim", "cells": 4, "sample_hz": 2.0}]


def count(db_path: str, sql: str) -> int:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchone()[0]
    finally:
        db.close()


def test_port_taken_is_an_event_and_the_agent_keeps_collecting(tmp_path, agent_proc):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    try:
        port = squatter.getsockname()[1]
        cfg = agent_config(tmp_path, None, None, None, drivers=SIM, dashboard={"enabled": True, "port": port})
        agent = agent_proc(cfg).start()
        agent.wait_log("dashboard not started: cannot listen on 127.0.0.1")
        agent.wait_log("agent started")
        db = cfg["store"]["path"]
        first = count(db, "SELECT count(*) FROM readings")
        deadline = time.monotonic() + 20
        while count(db, "SELECT count(*) FROM readings") < first + 16 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert count(db, "SELECT count(*) FROM readings") >= first + 16, "the agent stopped collecting"
        assert agent.stop() == 0
        assert count(db, "SELECT count(*) FROM events WHERE kind = 'dashboard.unavailable'") == 1
    finally:
        squatter.close()


def test_stop_with_a_browser_stream_open(tmp_path, agent_proc):
    cfg = agent_config(tmp_path, None, None, None, drivers=SIM, dashboard={"enabled": True, "port": 0})
    agent = agent_proc(cfg).start()
    port = dashboard_port(agent)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("GET", "/api/stream?cells=c01")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    seen = b""
    while b"event: tick" not in seen:  # init, then at least one live tick
        seen += resp.read1(65536)
    assert b"event: init" in seen
    assert agent.stop() == 0, agent.log()[-2000:]  # the open stream is closed by the agent, not waited for
    assert "agent stopped" in agent.log()
    conn.close()
