"""Crash loop: SIGKILL the agent at random moments with the uplink busy; every committed seq reaches the broker."""

from __future__ import annotations

import random
import time

import pytest

from tests.conftest import agent_config
from tests.reliability.common import committed_max_seq, duplicates, missing, report


def crash_loop(tmp_path, broker, subscriber, rig_cert, pki, agent_proc, kills: int, name: str) -> None:
    cfg = agent_config(
        tmp_path,
        broker,
        rig_cert,
        pki,
        drivers=[{"type": "simulator", "name": "sim", "cells": 16, "sample_hz": 50.0}],
        uplink={"message_target_bytes": 3000, "linger_ms": 50},
    )
    agent = agent_proc(cfg)
    rng = random.Random(20261127)
    for k in range(kills):
        agent.start()
        time.sleep(rng.uniform(0.8, 2.5))  # some kills land before the uplink connects, most during publishing
        agent.kill()
    agent.start()
    agent.wait_started()
    time.sleep(2.0)
    upto = committed_max_seq(cfg["store"]["path"])
    subscriber.wait_for(
        lambda: not missing(subscriber.telemetry_seqs(), upto), 90, f"every committed seq up to {upto} at the broker"
    )
    assert agent.stop() == 0
    seqs = subscriber.telemetry_seqs()
    figures = report(
        name,
        kills=kills,
        committed_upto=upto,
        received=len(seqs),
        distinct=len(set(seqs)),
        duplicates=duplicates(seqs),
        duplicate_pct=round(100 * duplicates(seqs) / max(len(seqs), 1), 2),
    )
    assert figures["distinct"] >= upto


def test_crash_loop_20_kills(tmp_path, broker, subscriber, rig_cert, pki, agent_proc):
    crash_loop(tmp_path, broker, subscriber, rig_cert, pki, agent_proc, kills=20, name="crash_loop_20")


@pytest.mark.soak
def test_crash_loop_100_kills(tmp_path, broker, subscriber, rig_cert, pki, agent_proc):
    crash_loop(tmp_path, broker, subscriber, rig_cert, pki, agent_proc, kills=100, name="crash_loop_100")
