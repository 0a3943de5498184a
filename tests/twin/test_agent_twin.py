"""The twin inside the agent process: simulated rig -> agent (twin on) -> mosquitto over mTLS -> subscriber.

Cycle summaries with predictions arrive on the cycles topic, every message matches its JSON Schema, and the store
holds what was published.
"""

from __future__ import annotations

import json
import sqlite3

from agent.inference import default_model_path
from tests.conftest import agent_config
from tests.test_e2e_uplink import validate_all


def test_agent_publishes_cycles_with_predictions(tmp_path, broker, subscriber, rig_cert, pki, agent_proc):
    cfg = agent_config(
        tmp_path,
        broker,
        rig_cert,
        pki,
        drivers=[{"type": "simulator", "name": "sim", "cells": 4, "sample_hz": 0.2, "speed": 4000.0}],
        twin={"forecast_cycles": 20, "alarms": {"repeat_s": 36000.0}},
    )
    agent = agent_proc(cfg).start()
    agent.wait_log("uplink connected", 30)

    def cycles():
        return [c for d in subscriber.docs("/cycles") for c in d["cycles"]]

    subscriber.wait_for(lambda: sum(c["cycle"] >= 4 for c in cycles()) >= 4, 90, "four cells past cycle 4")
    assert agent.stop() == 0, agent.log()[-3000:]
    counts = validate_all(subscriber.snapshot())
    assert counts["cycles"] >= 1 and counts["telemetry"] >= 1
    soh_version = json.loads(default_model_path("soh").with_suffix(".json").read_text())["version"]
    got = cycles()
    by_cell: dict[str, list[int]] = {}
    for c in got:
        by_cell.setdefault(c["cell"], []).append(c["cycle"])
        assert c["model_version"] == soh_version
        assert 0.9 < c["coulombic_efficiency"] < 1.1 and c["discharge_ah"] > 1.0
        if c["cycle"] >= 3:
            assert len(c["predicted_capacity_ah"]) == 20
            assert c["predicted_eol_cycle"] is None or c["predicted_eol_cycle"] > c["cycle"]
    assert len(by_cell) == 4
    for cell, nums in by_cell.items():
        assert sorted(set(nums)) == list(range(1, max(nums) + 1)), (cell, nums)
    db = sqlite3.connect(cfg["store"]["path"])
    stored = db.execute("SELECT count(*), sum(sent) FROM cycles").fetchone()
    assert stored[0] >= len({(c["cell"], c["cycle"]) for c in got}) and stored[1] >= 1
