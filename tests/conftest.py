"""Shared fixtures. Real peers on loopback: mosquitto with TLS client certificates stands in for IoT Core."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.agentproc import AgentProcess
from tests.support.broker import Broker
from tests.support.pki import Pki
from tests.support.subscriber import Subscriber

ROOT = Path(__file__).resolve().parents[1]
RIG = "test-rig-01"


def data_dir() -> Path:
    """The shared real-data folder: ../shared/data beside the project root (or $BATTERY_TWIN_DATA)."""
    p = Path(os.environ.get("BATTERY_TWIN_DATA", ROOT.parent / "shared" / "data"))
    if not p.is_dir():
        raise RuntimeError(
            f"real battery data not found at {p}: it lives in ../shared/data beside the project "
            "(or set BATTERY_TWIN_DATA)"
        )
    return p


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return data_dir()


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def rig_cert(pki) -> tuple[Path, Path]:
    """Client certificate whose CN is the rig id (IoT Core: thing name = client id)."""
    return pki.issue(RIG)


@pytest.fixture()
def broker(tmp_path, pki):
    b = Broker(tmp_path / "broker", pki).start()
    yield b
    b.stop()


@pytest.fixture()
def subscriber(broker, pki):
    cert, key = pki.issue("test-subscriber")
    s = Subscriber(broker.port, pki.ca_cert, cert, key).start()
    yield s
    s.stop()


def agent_config(
    tmp_path: Path, broker: Broker | None, rig_cert: tuple[Path, Path] | None, pki: Pki | None, **overrides: Any
) -> dict[str, Any]:
    """A config dict for an agent on the simulator, publishing to the test broker (if given)."""
    cfg: dict[str, Any] = {
        "rig": RIG,
        "store": {"path": str(tmp_path / "store" / "agent.db"), "maintenance_interval_s": 1.0},
        "uplink": {"health_interval_s": 2.0, "health_heartbeat_s": 2.0, "linger_ms": 200, "flow_control": "none"},
        "drivers": [{"type": "simulator", "name": "sim", "cells": 4, "sample_hz": 10.0, "speed": 1.0}],
        "log": {"level": "INFO"},
    }
    if broker is not None and rig_cert is not None and pki is not None:
        cfg["uplink"].update(
            {
                "endpoint": "localhost",
                "port": broker.port,
                "cert": str(rig_cert[0]),
                "key": str(rig_cert[1]),
                "ca": str(pki.ca_cert),
            }
        )
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


@pytest.fixture()
def agent_proc(tmp_path):
    procs: list[AgentProcess] = []

    def make(config: dict[str, Any], name: str = "agent") -> AgentProcess:
        p = AgentProcess(tmp_path / name, config, name)
        procs.append(p)
        return p

    yield make
    for p in procs:
        if p.alive():
            p.kill()
