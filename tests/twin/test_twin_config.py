"""The [twin] config section: defaults, per-driver settings, and errors that name the key."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, parse_config
from agent.runtime import build_agent
from agent.twin.processor import TwinProcessor


def test_defaults_enable_the_twin_with_the_shipped_models(tmp_path):
    cfg = parse_config(
        {"rig": "r1", "store": {"path": str(tmp_path / "a.db")}, "drivers": [{"type": "simulator", "cells": 2}]}
    )
    assert cfg.twin.enabled and cfg.twin.eol_fraction == 0.8
    agent = build_agent(cfg)
    twin = [p for p in agent.processors if isinstance(p, TwinProcessor)]
    assert len(twin) == 1 and twin[0].soh is not None and twin[0].cycle_life is not None
    off = parse_config({"rig": "r1", "twin": {"enabled": False}})
    assert not any(isinstance(p, TwinProcessor) for p in build_agent(off).processors)


def test_errors_name_the_key():
    with pytest.raises(ConfigError) as err:
        parse_config(
            {
                "rig": "r1",
                "twin": {
                    "drivers": {"sim": {"chemistry": "unobtainium"}},
                    "eol_fraction": 1.5,
                    "alarms": {"voltage_residual_mv": -1, "no_such_alarm": 1},
                },
            }
        )
    text = str(err.value)
    assert "twin.drivers.sim.chemistry: unknown chemistry 'unobtainium'" in text
    assert "twin.eol_fraction" in text and "twin.alarms.voltage_residual_mv" in text
    assert "twin.alarms.no_such_alarm" in text


def test_per_driver_and_per_cell_capacity():
    cfg = parse_config(
        {
            "rig": "r1",
            "twin": {
                "drivers": {"lab": {"chemistry": "lfp", "nominal_capacity_ah": 1.1}},
                "cells": {"x2": {"nominal_capacity_ah": 2.2}},
            },
        }
    )
    tp = TwinProcessor(cfg.twin)
    model = tp._resolve("lab", ["x1", "x2"])
    assert model.name == "lfp" and list(model.nominal_ah) == [1.1, 2.2]
    assert model.rc(model.nominal_ah * 0 + 0.5, [0, 1])[0][1] == pytest.approx(model.rc([0.5], [0])[0][0] / 2)
