"""The agent with the simulator's own fault injection: each fault raises its alarm on the events topic, on its
cell only, and every message matches its schema (ground truth: the driver announces each fault as an event)."""

from __future__ import annotations

import collections

from tests.conftest import agent_config
from tests.test_e2e_uplink import validate_all
from tests.twin.conftest import FAULT_CELLS, FAULT_SPECS, HEALTHY_CELLS


def test_agent_detects_the_simulators_faults(tmp_path, broker, subscriber, rig_cert, pki, agent_proc):
    driver = {
        "type": "simulator",
        "name": "sim",
        "cells": 12,
        "chemistry": "nmc811",
        "sample_hz": 0.2,
        "speed": 3000.0,
        "seed": 0,
        "faults": FAULT_SPECS,
    }
    cfg = agent_config(tmp_path, broker, rig_cert, pki, drivers=[driver])
    agent = agent_proc(cfg).start()
    agent.wait_log("uplink connected", 30)

    def kinds() -> dict[str, set[str]]:
        out: dict[str, set[str]] = collections.defaultdict(set)
        for d in subscriber.docs("/events"):
            for e in d["events"]:
                if e["source"] == "twin":
                    out[e["cell"]].add(e["kind"])
        return out

    subscriber.wait_for(
        lambda: all(exp <= kinds()[cell] for cell, exp in FAULT_CELLS.items()),
        120,
        "every fault's alarm on the events topic",
    )
    assert agent.stop() == 0, agent.log()[-3000:]
    got = kinds()
    for cell in HEALTHY_CELLS:
        assert not got[cell], (cell, got[cell])
    announced = {e["cell"] for d in subscriber.docs("/events") for e in d["events"] if e["kind"] == "simulator.fault"}
    assert {f["cell"] for f in FAULT_SPECS} <= announced
    counts = validate_all(subscriber.snapshot())
    assert counts["events"] >= 1 and counts["cycles"] >= 1
