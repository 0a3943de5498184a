"""Config through the device shadow, with the agent running in this process and the shadow stand-in behind the fake
link (AWS's shadow service cannot run here; the end-to-end case over mosquitto is in test_remote_e2e.py)."""

from __future__ import annotations

import asyncio
import json

from agent.cli import main
from agent.remote.layer import STATE_FILE, ShadowState, load_effective
from tests.conftest import RIG
from tests.remote.conftest import running, write_config
from tests.support.awsiot import delta_of

REMOTE = {"shadow": True, "allow": ["drivers", "validate", "twin.alarms", "uplink.linger_ms"], "confirm_s": 0.6}
BAD_DRIVER = {"type": "serial", "port": "/dev/ttyBT-none", "profile": "scpi_cycler"}


def events(rig, prefix: str) -> list:
    return [e for e in rig.events if e.kind.startswith(prefix)]


async def outcome(rig, version: int, timeout_s: float = 10.0) -> dict:
    def done():
        st = rig.reported().get("status", {})
        return st.get("desired_version") == version

    await rig.until(done, timeout_s, f"the outcome of desired version {version} in reported")
    return rig.reported()


def test_a_delta_is_applied_restarting_only_that_driver_confirmed_persisted_and_reported(tmp_path, capsys):
    path = write_config(tmp_path, REMOTE)

    async def scenario():
        async with running(path) as rig:
            await rig.until(lambda: rig.agent.drivers_status()[0]["state"] == "running", 10, "sim running")
            before = rig.agent.runners["sim"]
            v = rig.set_desired(
                {"drivers": {"sim": {"sample_hz": 5.0}}, "validate": {"voltage_v": {"min": 1.0, "max": 4.5}}}
            )
            rep = await outcome(rig, v)
            assert rep["status"]["outcome"] == "applied", rep
            assert rep["status"]["config_version"] == v
            assert rep["drivers"] == {"sim": {"sample_hz": 5.0}}  # reported mirrors the confirmed layer
            assert rig.agent.cfg.drivers[0].sample_hz == 5.0 and rig.agent.cfg.validate_.voltage_v.min == 1.0
            assert rig.agent.runners["sim"] is not before  # the changed driver restarted
            doc = rig.services.shadow.document(RIG, "config")
            assert not delta_of(doc.desired, doc.reported)  # in sync: the cloud sees nothing pending
            assert [e.kind for e in events(rig, "remote.")] == ["remote.config_applied"]
            h = rig.remote.health_fields()["remote"]
            assert h["config_version"] == v and h["config_status"] == "applied"
        # Persisted: a restart without network runs file + confirmed layer.
        st = ShadowState.load(tmp_path / "store")
        assert st.layer["drivers"] == {"sim": {"sample_hz": 5.0}} and st.version == v
        cfg, evs = load_effective(path)
        assert cfg.drivers[0].sample_hz == 5.0 and not evs

    asyncio.run(scenario())
    capsys.readouterr()
    assert main(["config", "show", "--effective", str(path)]) == 0
    shown = {line.split(" = ")[0].strip(): line.rsplit("# ", 1)[1] for line in capsys.readouterr().out.splitlines()}
    assert shown["drivers.sim.sample_hz"] == "shadow v1" and shown["drivers.sim.cells"] == "file"
    assert shown["validate.voltage_v.min"] == "shadow v1" and shown["uplink.linger_ms"] == "default"


def test_an_invalid_desired_config_is_rejected_with_every_message_and_the_running_config_is_untouched(tmp_path):
    path = write_config(tmp_path, REMOTE)

    async def scenario():
        async with running(path) as rig:
            running_cfg = rig.agent.cfg
            task = rig.agent.runners["sim"].task
            v = rig.set_desired(
                {
                    "drivers": {"sim": {"sample_hz": -1, "cells": "many"}},
                    "validate": {"voltage_v": {"min": 5.0, "max": 1.0}},
                    "store": {"path": "/tmp/elsewhere.db"},
                    "uplink": {"endpoint": "evil.example.com"},
                    "log": {"level": "DEBUG"},
                }
            )
            rep = await outcome(rig, v)
            st = rep["status"]
            assert st["outcome"] == "rejected" and st["config_version"] == 0
            text = " | ".join(st["problems"])
            for needle in (
                "store.path: never set remotely",
                "uplink.endpoint: never set remotely",
                "log.level: not in remote.allow",
            ):
                assert needle in text, text
            # and every validation message for the paths it may set, from the same models as `config check`
            assert "drivers[0].sample_hz" in text and "drivers[0].cells" in text and "must be below max" in text, text
            assert len(st["problems"]) == 6
            v2 = rig.set_desired({"store": None, "uplink": None, "log": None})  # the operator removes three
            st = (await outcome(rig, v2))["status"]
            assert st["outcome"] == "rejected" and len(st["problems"]) == 3, st
            assert rig.agent.cfg is running_cfg and rig.agent.runners["sim"].task is task and not task.done()
            evs = events(rig, "remote.config_rejected")
            assert len(evs) == 2 and len(evs[1].data["problems"]) == 3
        assert ShadowState.load(tmp_path / "store").layer == {}

    asyncio.run(scenario())


def test_a_config_that_makes_a_driver_fail_is_rolled_back(tmp_path):
    path = write_config(tmp_path, REMOTE)

    async def scenario():
        async with running(path) as rig:
            await rig.until(lambda: rig.agent.drivers_status()[0]["state"] == "running", 10, "sim running")
            v = rig.set_desired({"drivers": {"cycler": BAD_DRIVER}})
            st = (await outcome(rig, v))["status"]
            assert st["outcome"] == "rolled_back" and "driver cycler failed" in st["reason"], st
            assert list(rig.agent.runners) == ["sim"] and [d.name for d in rig.agent.cfg.drivers] == ["sim"]
            assert st["config_version"] == 0 and "drivers" not in rig.reported()
            assert events(rig, "remote.config_rolled_back")
            # The same desired state is not tried again and again: a new delta with it changes nothing.
            rig.link.deliver(
                f"$aws/things/{RIG}/shadow/name/config/update/delta", json.dumps({"state": {}, "version": v}).encode()
            )
            await asyncio.sleep(0.3)
            assert len(events(rig, "remote.config_")) == 1
        assert ShadowState.load(tmp_path / "store").last["outcome"] == "rolled_back"

    asyncio.run(scenario())


def test_restart_only_keys_are_refused_and_live_keys_apply_in_place(tmp_path):
    path = write_config(tmp_path, {**REMOTE, "allow": ["uplink", "twin"]})

    async def scenario():
        async with running(path) as rig:
            v = rig.set_desired({"uplink": {"keep_alive_s": 60}})
            st = (await outcome(rig, v))["status"]
            assert st["outcome"] == "rejected" and "uplink: applies only when the agent starts" in st["problems"][0]
            v = rig.set_desired(
                {"uplink": {"keep_alive_s": None, "linger_ms": 500}, "twin": {"alarms": {"max_temperature_c": 55.0}}}
            )
            st = (await outcome(rig, v))["status"]
            assert st["outcome"] == "applied", st
            assert rig.agent.cfg.uplink.linger_ms == 500 and rig.agent.cfg.twin.alarms.max_temperature_c == 55.0
            twin = rig.agent.processors[0]
            assert twin.cfg.alarms.max_temperature_c == 55.0  # the twin was rebuilt with the new section

    asyncio.run(scenario())


def test_deleting_a_desired_key_reverts_to_the_file_and_offline_changes_arrive_on_reconnect(tmp_path):
    path = write_config(tmp_path, REMOTE)

    async def scenario():
        async with running(path) as rig:
            v = rig.set_desired({"drivers": {"sim": {"sample_hz": 5.0}}})
            assert (await outcome(rig, v))["status"]["outcome"] == "applied"
            rig.link.disconnect()
            v = rig.set_desired({"drivers": None})  # the operator deletes it while the rig is offline
            await asyncio.sleep(0.3)
            assert rig.agent.cfg.drivers[0].sample_hz == 5.0
            rig.link.reconnect()  # subscriptions are made again, the shadow is read again
            rep = await outcome(rig, v)
            assert rep["status"]["outcome"] == "applied" and rig.agent.cfg.drivers[0].sample_hz == 10.0
            assert "drivers" not in rep  # the key the layer no longer sets is deleted from reported too
        assert ShadowState.load(tmp_path / "store").layer == {}

    asyncio.run(scenario())


def test_a_persisted_layer_that_no_longer_fits_the_file_is_dropped_with_an_event(tmp_path):
    path = write_config(tmp_path, REMOTE)
    (tmp_path / "store").mkdir(exist_ok=True)
    ShadowState(layer={"drivers": {"sim": {"sample_hz": 5.0}}}, version=7).save(tmp_path / "store")
    cfg, evs = load_effective(path)
    assert cfg.drivers[0].sample_hz == 5.0 and not evs
    write_config(tmp_path, {**REMOTE, "allow": ["validate"]})  # the operator narrowed what the shadow may set
    cfg, evs = load_effective(path)
    assert cfg.drivers[0].sample_hz == 10.0
    assert [e.kind for e in evs] == ["remote.layer_dropped"] and "not in remote.allow" in evs[0].message
    (tmp_path / "store" / STATE_FILE).write_text("{not json")
    cfg, evs = load_effective(path)  # a damaged state file: the file alone, never a crash
    assert cfg.drivers[0].sample_hz == 10.0
