"""Broker outages and restart loops, a black-holed link and a slow link: no gap, bounded memory."""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest

from tests.conftest import agent_config
from tests.reliability.common import committed_max_seq, duplicates, missing, report, rss_kb, soak_factor
from tests.support.proxy import Proxy


def wait_all(subscriber, cfg, timeout_s: float = 90) -> int:
    upto = committed_max_seq(cfg["store"]["path"])
    subscriber.wait_for(
        lambda: not missing(subscriber.telemetry_seqs(), upto),
        timeout_s,
        f"every committed seq up to {upto} at the broker",
    )
    return upto


@pytest.mark.parametrize("outage_s", [20] + ([180] if soak_factor() else []))
def test_long_broker_outage(tmp_path, broker, subscriber, rig_cert, pki, agent_proc, outage_s):
    cfg = agent_config(tmp_path, broker, rig_cert, pki)
    agent = agent_proc(cfg).start()
    agent.wait_log("uplink connected")
    subscriber.wait_for(lambda: subscriber.telemetry_seqs(), 30, "first readings")
    subscriber.stop()
    broker.stop()
    before = committed_max_seq(cfg["store"]["path"])
    time.sleep(outage_s)
    during = committed_max_seq(cfg["store"]["path"])
    assert agent.alive() and during > before + 30 * outage_s  # field side kept polling (4 cells x 10 Hz)
    broker.start()
    subscriber.client.start()
    upto = wait_all(subscriber, cfg)
    assert agent.stop() == 0
    report(f"broker_outage_{outage_s}s", committed_upto=upto, duplicates=duplicates(subscriber.telemetry_seqs()))


def test_broker_restart_loop(tmp_path, broker, subscriber, rig_cert, pki, agent_proc):
    cfg = agent_config(tmp_path, broker, rig_cert, pki)
    agent = agent_proc(cfg).start()
    agent.wait_log("uplink connected")
    for k in range(6):
        time.sleep(1.5)
        broker.stop()
        time.sleep(0.5 + 0.3 * k)
        broker.start()
    upto = wait_all(subscriber, cfg)
    assert agent.alive() and agent.stop() == 0
    assert (
        agent.log().count("uplink connected") >= 2
    )  # it really went through reconnects (quick restarts may be missed)
    report("broker_restart_loop", restarts=6, committed_upto=upto, duplicates=duplicates(subscriber.telemetry_seqs()))


def log_time(line: str) -> float:
    return datetime.strptime(re.search(r"ts=(\S+)Z", line).group(1), "%Y-%m-%dT%H:%M:%S").timestamp()


def test_black_holed_link_is_noticed_by_keepalive_and_heals_without_gap(
    tmp_path, broker, subscriber, rig_cert, pki, agent_proc
):
    proxy = Proxy(broker.port).start()
    try:
        cfg = agent_config(
            tmp_path,
            broker,
            rig_cert,
            pki,
            uplink={"port": proxy.port, "keep_alive_s": 5, "ping_timeout_ms": 2000, "ack_timeout_s": 10},
        )
        agent = agent_proc(cfg).start()
        agent.wait_log("uplink connected")
        subscriber.wait_for(lambda: len(subscriber.telemetry_seqs()) > 50, 30, "first readings")
        t_hole = time.time()
        proxy.blackhole()
        agent.wait_log("uplink disconnected", timeout_s=60)
        line = next(ln for ln in agent.log().splitlines() if "uplink disconnected" in ln)
        noticed_s = log_time(line) - int(t_hole)
        # keep-alive 5 s + ping timeout 2 s: the SDK must notice a silent peer, not wait for TCP (minutes).
        assert noticed_s <= 3 * (5 + 2), noticed_s
        time.sleep(3)
        proxy.heal()
        agent.wait_log("uplink connected endpoint", timeout_s=60)
        upto = wait_all(subscriber, cfg)
        assert agent.stop() == 0
        report(
            "black_holed_link",
            noticed_after_s=noticed_s,
            committed_upto=upto,
            duplicates=duplicates(subscriber.telemetry_seqs()),
        )
    finally:
        proxy.stop()


def test_slow_link_grows_the_store_not_the_memory(tmp_path, broker, subscriber, rig_cert, pki, agent_proc):
    proxy = Proxy(broker.port).start()
    try:
        cfg = agent_config(
            tmp_path,
            broker,
            rig_cert,
            pki,
            uplink={"port": proxy.port, "ack_timeout_s": 60},
            drivers=[{"type": "simulator", "name": "sim", "cells": 64, "sample_hz": 20.0}],
        )
        agent = agent_proc(cfg).start()
        agent.wait_log("uplink connected")
        time.sleep(3)
        proxy.set_delay_s(0.3)
        proxy.set_rate_bps(8_000)  # ~40 KB/s of readings on the wire want to go through 8 KB/s
        rss0 = rss_kb(agent.proc.pid)
        depth0 = committed_max_seq(cfg["store"]["path"]) - len(set(subscriber.telemetry_seqs()))
        samples = []
        for _ in range(20):
            time.sleep(1)
            samples.append(rss_kb(agent.proc.pid))
        depth1 = committed_max_seq(cfg["store"]["path"]) - len(set(subscriber.telemetry_seqs()))
        assert depth1 > depth0 + 10_000  # it could not keep up: the backlog went to the store...
        growth_mb = (max(samples) - rss0) / 1024
        assert growth_mb < 25, f"RSS grew by {growth_mb:.1f} MB on a slow link"  # ...not to memory
        proxy.heal()
        upto = wait_all(subscriber, cfg, timeout_s=120)
        assert agent.stop() == 0
        report(
            "slow_link",
            rss_start_mb=round(rss0 / 1024, 1),
            rss_max_mb=round(max(samples) / 1024, 1),
            backlog_growth=depth1 - depth0,
            committed_upto=upto,
        )
    finally:
        proxy.stop()
