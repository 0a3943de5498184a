"""Torn and corrupt stores, a full disk, and power loss at every step between commit and acknowledgement."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from agent.faultpoints import POINTS
from tests.conftest import agent_config
from tests.reliability.common import committed_max_seq, committed_seqs, duplicates, missing, report
from tests.support.ports import reserve_port


def events_at_broker(subscriber) -> list[dict]:
    return [e for doc in subscriber.docs("/events") for e in doc["events"]]


def buffer_then_kill(agent, cfg, seconds: float = 3.0) -> int:
    """Run with the uplink pointing nowhere, so everything stays unsent; then pull the plug."""
    agent.start()
    agent.wait_log("agent started")
    time.sleep(seconds)
    agent.kill()
    return committed_max_seq(cfg["store"]["path"])


def dead_uplink(cfg: dict) -> dict:
    return {**cfg, "uplink": {**cfg["uplink"], "port": reserve_port()}}


@pytest.mark.parametrize("damage", ["flip_bytes", "garbage"])
def test_corrupt_store_is_quarantined_and_the_agent_keeps_ingesting(
    tmp_path, broker, subscriber, rig_cert, pki, agent_proc, damage
):
    cfg = agent_config(tmp_path, broker, rig_cert, pki)
    db = Path(cfg["store"]["path"])
    old_max = buffer_then_kill(agent_proc(dead_uplink(cfg), "first"), cfg)
    sqlite3.connect(db).execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    data = bytearray(db.read_bytes())
    if damage == "flip_bytes":
        rng = np.random.default_rng(7)
        for off in rng.integers(2 * 4096, len(data), 300):
            data[off] ^= 0xA5
    else:
        data = bytearray(os.urandom(len(data)))
    db.write_bytes(bytes(data))
    agent = agent_proc(cfg).start()
    subscriber.wait_for(
        lambda: any(e["kind"] == "store.quarantined" for e in events_at_broker(subscriber)),
        60,
        "the store.quarantined event at the broker",
    )
    subscriber.wait_for(lambda: len(subscriber.telemetry_seqs()) > 100, 60, "fresh readings after the quarantine")
    assert agent.stop() == 0
    assert list(db.parent.glob(f"{db.name}.corrupt-*")), "the damaged file is kept for forensics"
    new_seqs = subscriber.telemetry_seqs()
    assert min(new_seqs) > old_max  # the fresh store never reuses a seq the old one may have published
    report(f"quarantine_{damage}", old_max_seq=old_max, new_min_seq=min(new_seqs))


def test_torn_wal_recovers_and_never_reuses_a_seq(tmp_path, broker, subscriber, rig_cert, pki, agent_proc):
    cfg = agent_config(tmp_path, broker, rig_cert, pki, store={"maintenance_interval_s": 0.5})
    db = Path(cfg["store"]["path"])
    old_max = buffer_then_kill(agent_proc(dead_uplink(cfg), "first"), cfg, seconds=4.0)
    wal = Path(str(db) + "-wal")
    assert wal.stat().st_size > 10_000, "the test needs a WAL with committed frames to tear"
    with open(wal, "r+b") as f:
        f.truncate(wal.stat().st_size // 3)  # lose the last two thirds of the committed frames
    agent = agent_proc(cfg).start()
    subscriber.wait_for(lambda: len(subscriber.telemetry_seqs()) > 200, 60, "readings after the tear")
    assert agent.stop() == 0
    kept = max(s for s in committed_seqs(db) if s <= old_max)  # what survived the tear
    seqs = subscriber.telemetry_seqs()
    assert not missing(seqs, kept), "everything that survived the tear is delivered"
    after = [s for s in seqs if s > kept]
    assert after and min(after) > old_max or any(e["kind"] == "store.rewound" for e in events_at_broker(subscriber))
    # A seq the torn store might have published before is never used again for a new reading:
    assert all(s > old_max for s in after), "seq reused after a torn WAL"
    report("torn_wal", committed_before=old_max, survived=kept, first_new=min(after))


def test_disk_full_applies_the_drop_policy_and_never_crashes(tmp_path, rig_cert, pki, agent_proc):
    if os.geteuid() != 0:
        pytest.fail("the disk-full test mounts a 24 MB tmpfs and needs root (run make test as root)")
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], check=True)
    try:
        cfg = agent_config(
            tmp_path,
            None,
            None,
            None,
            store={
                "path": str(mnt / "agent.db"),
                "max_bytes": 2**30,
                "maintenance_interval_s": 2.0,
                "min_free_bytes": 4 * 2**20,
            },
            drivers=[{"type": "simulator", "name": "sim", "cells": 512, "sample_hz": 50.0}],
        )
        cfg["uplink"].update(
            {
                "endpoint": "localhost",
                "port": reserve_port(),
                "cert": str(rig_cert[0]),
                "key": str(rig_cert[1]),
                "ca": str(pki.ca_cert),
            }
        )
        agent = agent_proc(cfg).start()
        agent.wait_log("agent started")
        agent.wait_log("oldest unsent readings", timeout_s=120)  # the disk filled and the policy kicked in
        before = committed_max_seq(mnt / "agent.db")
        time.sleep(5)
        after = committed_max_seq(mnt / "agent.db")
        assert agent.alive() and after > before, "the agent keeps ingesting on a full disk"
        assert agent.stop() == 0
        db = sqlite3.connect(mnt / "agent.db")
        dropped = int(db.execute("SELECT value FROM meta WHERE key='dropped_readings'").fetchone()[0])
        depth, lo = db.execute("SELECT count(*), min(seq) FROM readings").fetchone()
        kinds = [r[0] for r in db.execute("SELECT kind FROM events")]
        assert dropped > 0 and "store.dropped_readings" in kinds
        lost = [r for r in kinds if r == "store.batch_lost"]
        log = agent.log()
        assert "Traceback" not in log, log[max(0, log.find("Traceback") - 1500) : log.find("Traceback") + 3000]
        report(
            "disk_full",
            dropped_readings=dropped,
            kept=depth,
            oldest_kept_seq=lo,
            committed_upto=after,
            batches_lost=len(lost),
            events=len(kinds),
        )
        assert dropped + depth + len(lost) * 512 >= after * 0.99  # nearly every reading is kept or counted
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("point", POINTS)
def test_power_loss_at_every_step_leaves_no_gap(tmp_path, broker, subscriber, rig_cert, pki, agent_proc, point):
    cfg = agent_config(tmp_path, broker, rig_cert, pki, uplink={"message_target_bytes": 1500, "linger_ms": 50})
    agent = agent_proc(cfg)
    os.environ["BATTERY_TWIN_FAULTPOINT"] = f"{point}:8"
    try:
        agent.start()
    finally:
        del os.environ["BATTERY_TWIN_FAULTPOINT"]
    agent.proc.wait(60)
    assert agent.proc.returncode == -9, f"the fault point {point} was not reached:\n{agent.log()[-1500:]}"
    died_at = committed_max_seq(cfg["store"]["path"])
    agent.start()
    agent.wait_started()
    time.sleep(2)
    upto = committed_max_seq(cfg["store"]["path"])
    subscriber.wait_for(lambda: not missing(subscriber.telemetry_seqs(), upto), 60, f"every seq up to {upto}")
    assert agent.stop() == 0
    seqs = subscriber.telemetry_seqs()
    report(f"power_loss_{point}", committed_at_kill=died_at, committed_upto=upto, duplicates=duplicates(seqs))
    by_seq: dict[int, tuple] = {}
    from agent.uplink.envelope import decode_telemetry

    for t, p in subscriber.snapshot():
        if t.endswith("/telemetry"):
            for r in decode_telemetry(p):
                assert by_seq.setdefault(r["seq"], (r["cell"], r["ts"])) == (r["cell"], r["ts"])
