"""Bad uplink input: clear errors before connecting, and a dead or wrong peer never stops the field side."""

from __future__ import annotations

import sqlite3
import time

from tests.conftest import agent_config
from tests.support.broker import Broker
from tests.support.pki import Pki
from tests.support.ports import reserve_port
from tests.support.waiting import wait_until


def depth(db_path: str) -> tuple[int, int]:
    db = sqlite3.connect(db_path)
    return db.execute("SELECT count(*), coalesce(sum(sent = 0), 0) FROM readings").fetchone()


def test_missing_cert_fails_fast_with_a_clear_error(tmp_path, pki, rig_cert, agent_proc):
    cfg = agent_config(
        tmp_path,
        None,
        None,
        None,
        uplink={
            "endpoint": "localhost",
            "port": reserve_port(),
            "cert": str(tmp_path / "nope.crt"),
            "key": str(rig_cert[1]),
            "ca": str(pki.ca_cert),
        },
    )
    agent = agent_proc(cfg).start()
    agent.proc.wait(30)
    assert agent.proc.returncode == 2
    assert "uplink starting" not in agent.log()  # refused before any TLS attempt (which takes ~24 s to fail)
    assert "uplink.cert: file" in agent.log() and "does not exist" in agent.log()


def test_key_that_is_not_pem_is_refused_before_connecting(tmp_path, pki, rig_cert, agent_proc):
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("hello")
    bad_key.chmod(0o600)
    cfg = agent_config(
        tmp_path,
        None,
        None,
        None,
        uplink={
            "endpoint": "localhost",
            "port": reserve_port(),
            "cert": str(rig_cert[0]),
            "key": str(bad_key),
            "ca": str(pki.ca_cert),
        },
    )
    agent = agent_proc(cfg).start()
    agent.proc.wait(30)
    assert agent.proc.returncode == 2 and "uplink.key" in agent.log() and "not a PEM private key" in agent.log()
    assert "hello" not in agent.log()


def test_wrong_ca_is_a_clear_tls_error_and_the_agent_keeps_buffering(tmp_path, broker, rig_cert, agent_proc):
    other = Pki.create(tmp_path / "other-ca", name="other-ca")
    cfg = agent_config(
        tmp_path,
        None,
        None,
        None,
        uplink={
            "endpoint": "localhost",
            "port": broker.port,
            "cert": str(rig_cert[0]),
            "key": str(rig_cert[1]),
            "ca": str(other.ca_cert),
        },
    )
    agent = agent_proc(cfg).start()
    agent.wait_log("uplink cannot connect", timeout_s=40)
    assert "TLS" in agent.log()
    n1 = depth(cfg["store"]["path"])[1]
    wait_until(lambda: depth(cfg["store"]["path"])[1] > n1 + 20, 30, "the store to keep growing")
    assert agent.alive()
    assert agent.stop() == 0


def test_unreachable_broker_buffers_then_drains(tmp_path, pki, rig_cert, agent_proc):
    port = reserve_port()
    cfg = agent_config(
        tmp_path,
        None,
        None,
        None,
        uplink={
            "endpoint": "localhost",
            "port": port,
            "cert": str(rig_cert[0]),
            "key": str(rig_cert[1]),
            "ca": str(pki.ca_cert),
            "health_interval_s": 1.0,
        },
    )
    agent = agent_proc(cfg).start()
    agent.wait_log("uplink cannot connect", timeout_s=30)
    assert "level=WARNING" in agent.log()
    wait_until(lambda: depth(cfg["store"]["path"])[0] >= 40, 30, "readings buffered while the broker is away")
    total, unsent = depth(cfg["store"]["path"])
    assert unsent == total > 0  # nothing is marked sent while the broker is away
    broker = Broker(tmp_path / "late-broker", pki, port=port).start()
    try:
        agent.wait_log("uplink connected", timeout_s=40)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            t, u = depth(cfg["store"]["path"])
            if t > total and u < 200:
                break
            time.sleep(0.3)
        t, u = depth(cfg["store"]["path"])
        assert u < 200, f"store did not drain: {u} unsent of {t}"
        assert agent.stop() == 0
    finally:
        broker.stop()


def test_a_key_other_users_can_read_is_refused_with_the_fix(tmp_path, pki, rig_cert):
    """14 (low): the uplink used to warn and go on; it now refuses, as doctor does, naming the file and the fix
    and never its content."""
    import shutil

    import pytest

    from agent.config import UplinkConfig
    from agent.uplink.mqtt import TlsFilesError, check_tls_files

    key = tmp_path / "device.key"
    shutil.copy(rig_cert[1], key)
    files = {"endpoint": "localhost", "cert": rig_cert[0], "key": key, "ca": pki.ca_cert}
    for mode in (0o644, 0o640, 0o604):
        key.chmod(mode)
        with pytest.raises(TlsFilesError) as err:
            check_tls_files(UplinkConfig(**files))
        msg = str(err.value)
        assert f"mode {mode:04o}" in msg and f"chmod 600 {key}" in msg and "PRIVATE KEY" not in msg
    key.chmod(0o600)
    check_tls_files(UplinkConfig(**files))
