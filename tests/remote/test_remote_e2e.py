"""End to end over the real connection: ``battery-twin run`` in its own process, mosquitto with TLS client
certificates standing in for IoT Core's broker, and ``IotCloud`` (tests/support/iotcloud.py) standing in for the
Device Shadow and Jobs services behind it. That stand-in is a mock of AWS (the services cannot run here); the
agent's side (MQTT5 client, subscriptions, request/response over the broker) is the one that ships.
"""

from __future__ import annotations

import pytest

from agent.faultpoints import REMOTE_POINTS
from agent.remote.models import ModelStore
from tests.conftest import RIG, agent_config
from tests.reliability.common import committed_max_seq, missing
from tests.remote.conftest import jobs_remote
from tests.remote.modelkit import serve_job, variant, version_of
from tests.support.awsiot import Services
from tests.support.iotcloud import IotCloud
from tests.support.waiting import wait_until


@pytest.fixture()
def cloud(broker, pki, files):
    """The shadow and jobs stand-in (a mock of AWS) on the test broker; presigned URLs point at the HTTPS files."""
    cert, key = pki.issue("aws-iot-services-stand-in")
    c = IotCloud(broker.port, pki.ca_cert, cert, key, Services(files.presign)).start()
    yield c
    c.stop()


def test_a_shadow_change_at_64_cells_10_hz_is_applied_and_the_broker_misses_no_reading(
    tmp_path, broker, subscriber, rig_cert, pki, agent_proc, cloud
):
    sim = {"type": "simulator", "name": "sim", "cells": 64, "sample_hz": 10.0, "speed": 1.0}
    remote = {"shadow": True, "allow": ["drivers", "uplink.linger_ms"], "confirm_s": 1.0}
    cfg = agent_config(tmp_path, broker, rig_cert, pki, drivers=[sim], remote=remote)
    agent = agent_proc(cfg).start()
    agent.wait_started()
    wait_until(lambda: len(subscriber.telemetry_seqs()) > 500, 30, "readings at the broker")
    wait_until(lambda: "remote: shadow" in agent.log(), 10, "the remote service")
    # Set at once: a delta published before the agent subscribed is read by its get after subscribing.
    v = cloud.set_desired(RIG, {"drivers": {"sim": {"sample_hz": 5.0}}, "uplink": {"linger_ms": 100}})
    wait_until(lambda: cloud.reported(RIG).get("status", {}).get("desired_version") == v, 30, "the outcome in reported")
    at_apply = max(subscriber.telemetry_seqs())
    rep = cloud.reported(RIG)
    assert rep["status"]["outcome"] == "applied", rep
    assert rep["drivers"] == {"sim": {"sample_hz": 5.0}} and rep["uplink"] == {"linger_ms": 100}
    wait_until(
        lambda: any(e["kind"] == "remote.config_applied" for d in subscriber.docs("/events") for e in d["events"]),
        20,
        "the remote.config_applied event at the broker",
    )
    assert agent.stop() == 0
    top = committed_max_seq(cfg["store"]["path"])
    wait_until(lambda: max(subscriber.telemetry_seqs()) >= top, 10, "the last readings at the broker")
    seqs = subscriber.telemetry_seqs()
    assert top > at_apply > 500 and missing(seqs, top) == [], f"{len(missing(seqs, top))} of {top} readings missing"


def test_a_power_cut_at_each_step_of_a_model_update_leaves_a_model_and_the_job_completes_on_restart(
    tmp_path, broker, rig_cert, pki, agent_proc, cloud, files, signing_key, monkeypatch
):
    cfg = agent_config(tmp_path, broker, rig_cert, pki, remote=jobs_remote(signing_key, files, confirm_s=0.3))
    agent = agent_proc(cfg)
    store = ModelStore(tmp_path / "store")
    in_force = None  # shipped
    for i, point in enumerate(REMOTE_POINTS):
        model = variant(tmp_path / "m", f"cut{i}")
        monkeypatch.setenv("BATTERY_TWIN_FAULTPOINT", point)
        agent.start()
        agent.wait_started()
        job = f"cut-{i}"
        cloud.create_job(RIG, job, serve_job(model, signing_key, files))
        wait_until(lambda: not agent.alive(), 30, f"the power cut at {point}")
        assert agent.proc.returncode == -9, agent.log()[-2000:]
        now = store.current("soh")
        after_swap = point == "remote.after_swap"
        assert (now.version if now else None) == (version_of(model) if after_swap else in_force), point
        assert cloud.services.jobs.execution(RIG, job).status == "IN_PROGRESS"
        monkeypatch.delenv("BATTERY_TWIN_FAULTPOINT")
        agent.start()
        e = cloud.wait_job(RIG, job, 30)
        this_run = agent.log().rsplit(f"--- start #{agent.runs}", 1)[-1]
        if not after_swap:  # a cut after the swap leaves nothing half done (at most a version the prune missed)
            assert "removed what an interrupted model update left" in this_run, this_run[-2000:]
        assert e.status == "SUCCEEDED", (point, e.details, agent.log()[-2000:])
        assert e.details["version"] == version_of(model)
        in_force = version_of(model)
        assert store.current("soh").version == in_force
        assert not list((tmp_path / "store" / "models" / ".staging").glob("*/*")), "nothing half done is left"
        assert agent.stop() == 0
