"""The agent process's lifecycle against mosquitto over mTLS: SIGTERM drains and closes cleanly within the unit's
TimeoutStopSec; SIGHUP restarts only the drivers whose config changed and never touches the store or the MQTT
session."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np

from agent.uplink.envelope import decode_telemetry
from tests.conftest import RIG, agent_config
from tests.service.conftest import unit_seconds
from tests.support.agentproc import to_toml
from tests.support.waiting import wait_until

TIMEOUT_STOP_S = unit_seconds("TimeoutStopSec")


def gaps(seqs, upto: int) -> list[int]:
    return sorted(set(range(1, upto + 1)) - set(seqs))


def store_counts(db: Path) -> dict[str, int]:
    c = sqlite3.connect(db)
    try:
        return {
            "max_seq": c.execute("SELECT coalesce(max(seq), 0) FROM readings").fetchone()[0],
            "rows": c.execute("SELECT count(*) FROM readings").fetchone()[0],
            "next_seq": c.execute("SELECT value FROM meta WHERE key='next_seq.readings'").fetchone()[0],
            "unsent": c.execute("SELECT count(*) FROM readings WHERE sent=0").fetchone()[0],
            "unsent_events": c.execute("SELECT count(*) FROM events WHERE sent=0").fetchone()[0],
        }
    finally:
        c.close()


def stop_within_timeout(agent) -> int:
    """SIGTERM and wait at most the unit's TimeoutStopSec (systemd would SIGKILL after that)."""
    agent.proc.send_signal(signal.SIGTERM)
    return agent.proc.wait(TIMEOUT_STOP_S)


def broker_lines(broker, text: str) -> list[str]:
    return [ln for ln in broker.log.read_text().splitlines() if text in ln]


def test_sigterm_commits_drains_and_closes_cleanly(tmp_path, broker, subscriber, rig_cert, pki, agent_proc):
    cfg = agent_config(tmp_path, broker, rig_cert, pki)
    agent = agent_proc(cfg).start()
    agent.wait_log("uplink connected")
    subscriber.wait_for(lambda: len(subscriber.telemetry_seqs()) >= 100, 30, "100 readings at the broker")
    assert stop_within_timeout(agent) == 0, agent.log()[-2000:]
    db = Path(cfg["store"]["path"])
    # The store was closed cleanly: WAL checkpointed and removed, nothing left half-written.
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    st = store_counts(db)
    # Everything a driver handed over is in the store without a gap, and all of it reached the broker.
    assert st["rows"] == st["max_seq"] == st["next_seq"] - 1 and st["max_seq"] >= 100
    assert st["unsent"] == 0 and st["unsent_events"] == 0, st
    subscriber.wait_for(lambda: not gaps(subscriber.telemetry_seqs(), st["max_seq"]), 10, "every seq")
    # The MQTT session ended with a DISCONNECT, not a dropped socket.
    assert broker_lines(broker, f"Client {RIG} disconnected.")
    assert not broker_lines(broker, f"Client {RIG} closed its connection")
    assert "agent stopped" in agent.log()


def test_sigterm_with_broker_down_keeps_everything_and_exits_in_time(tmp_path, broker, rig_cert, pki, agent_proc):
    cfg = agent_config(tmp_path, broker, rig_cert, pki)
    agent = agent_proc(cfg).start()
    agent.wait_log("uplink connected")
    broker.stop()
    agent.wait_log("uplink disconnected")
    db = Path(cfg["store"]["path"])
    # readings keep arriving into the store while the link is down
    wait_until(lambda: store_counts(db)["unsent"] > 0, 20, "readings stored while the link is down")
    assert stop_within_timeout(agent) == 0, agent.log()[-2000:]
    assert not Path(f"{db}-wal").exists()
    st = store_counts(db)
    assert st["rows"] == st["max_seq"] == st["next_seq"] - 1
    assert st["unsent"] > 0, "readings made during the outage must wait in the store"


def _db_fd(pid: int, db: Path) -> tuple[str, int]:
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(db):
                return fd, os.stat(f"/proc/{pid}/fd/{fd}").st_ino
        except OSError:
            continue
    raise AssertionError(f"the agent has no open file handle on {db}")


def _last_health(subscriber, after_ms: int = 0) -> dict | None:
    docs = [d for d in subscriber.docs("/health") if d["ts"] > after_ms]
    return docs[-1] if docs else None


def _sim_s(health: dict) -> dict[str, float]:
    return {d["name"]: d["detail"].get("simulated_s", 0.0) for d in health["drivers"]}


def test_sighup_restarts_only_changed_drivers(tmp_path, broker, subscriber, rig_cert, pki, agent_proc):
    sim = {"type": "simulator", "cells": 2, "sample_hz": 10.0}
    drivers = [{**sim, "name": "a", "cell_prefix": "a"}, {**sim, "name": "b", "cell_prefix": "b"}]
    cfg = agent_config(tmp_path, broker, rig_cert, pki, drivers=drivers, uplink={"health_interval_s": 1.0})
    agent = agent_proc(cfg).start()
    agent.wait_log("uplink connected")
    subscriber.wait_for(lambda: (_last_health(subscriber) or {}).get("uptime_s", 0) >= 3.0, 30, "3 s of health")
    db = Path(cfg["store"]["path"])
    fd_before = _db_fd(agent.proc.pid, db)
    before = _sim_s(_last_health(subscriber))

    # b changes, c is added, a stays; an uplink change other than linger_ms (live since issue 16) cannot apply
    # without a restart and must be kept.
    new = {
        **cfg,
        "drivers": [drivers[0], {**drivers[1], "sample_hz": 5.0}, {**sim, "name": "c", "cell_prefix": "c"}],
        "uplink": {**cfg["uplink"], "health_heartbeat_s": 7.0},
    }
    agent.config_path.write_text(to_toml(new))
    reload_ms = time.time_ns() // 1_000_000
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_log("config reloaded")
    line = next(ln for ln in agent.log().splitlines() if "config reloaded" in ln)
    assert "added=c" in line and "restarted=b" in line and "kept=a" in line and "needs_restart=uplink" in line
    subscriber.wait_for(
        lambda: any(
            r["cell"].startswith("c")
            for _, p in subscriber.snapshot()
            if _.endswith("/telemetry")
            for r in decode_telemetry(p)
        ),
        20,
        "cells of c",
    )
    subscriber.wait_for(
        lambda: (
            (h := _last_health(subscriber, reload_ms + 1500)) is not None
            and {d["name"] for d in h["drivers"]} == {"a", "b", "c"}
        ),
        20,
        "health after the reload",
    )
    after = _sim_s(_last_health(subscriber, reload_ms + 1500))
    assert after["a"] >= before["a"], "driver a was restarted: its simulated time went back"
    assert after["a"] - after["b"] >= 2.0, f"driver b was not restarted: {before} -> {after}"

    # Neither the store nor the MQTT session was torn down.
    assert _db_fd(agent.proc.pid, db) == fd_before
    assert len(broker_lines(broker, f"as {RIG} (")) == 1, broker.log.read_text()
    assert agent.log().count("uplink connected") == 1

    # A config that fails validation is reported and the running one stays.
    broken = {**new, "drivers": new["drivers"][:2] + [{**sim, "name": "c", "cell_prefix": "c", "cells": 0}]}
    agent.config_path.write_text(to_toml(broken))
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_log("reload rejected")
    assert "drivers[2].cells: Input should be greater than or equal to 1 (got 0)" in agent.log()
    n = len(subscriber.telemetry_seqs())
    subscriber.wait_for(lambda: len(subscriber.telemetry_seqs()) > n + 50, 20, "readings after the rejection")
    assert {d["name"]: d["state"] for d in _last_health(subscriber)["drivers"]} == {
        "a": "running",
        "b": "running",
        "c": "running",
    }

    assert stop_within_timeout(agent) == 0, agent.log()[-2000:]
    st = store_counts(db)
    assert st["rows"] == st["max_seq"] == st["next_seq"] - 1
    subscriber.wait_for(
        lambda: not gaps(subscriber.telemetry_seqs(), st["max_seq"]), 15, "every seq, across the reload, without a gap"
    )
    # Driver a's cells were sampled without interruption: every 100 ms, across the reload.
    recs = [r for t, p in subscriber.snapshot() if t.endswith("/telemetry") for r in decode_telemetry(p)]
    for cell in ("a01", "a02"):
        ts = np.unique([r["ts"] for r in recs if r["cell"] == cell])
        assert ts.size > 50 and set(np.diff(ts).tolist()) == {100}, f"{cell}: sampling of a was interrupted"
