"""`battery-twin doctor` against real peers: mosquitto with TLS client certificates, socat pty pairs, a listening
TCP socket, python-can's virtual bus, real SQLite files."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from agent.doctor import run_checks
from agent.store import Store
from drivers import registry
from tests.conftest import agent_config
from tests.service import probe_drivers
from tests.support.agentproc import to_toml
from tests.support.pki import Pki
from tests.support.ports import reserve_port

LINE = re.compile(r"^(OK  |WARN|FAIL)  (\S+) +(.+)$")


def write(tmp_path: Path, cfg: dict, name: str = "doctor.toml") -> Path:
    p = tmp_path / name
    p.write_text(to_toml(cfg))
    return p


def checks(path: Path) -> dict[str, object]:
    """name -> Check (in-process run)."""
    return {c.name: c for c in run_checks(str(path), lambda c: None)}


def cli(path: Path) -> tuple[int, str]:
    p = subprocess.run(
        [sys.executable, "-m", "agent", "doctor", "--config", str(path)], capture_output=True, text=True, timeout=120
    )
    return p.returncode, p.stdout + p.stderr


@pytest.fixture(scope="module")
def good_cert(tmp_path_factory) -> tuple[Pki, Path, Path]:
    """A CA and a client cert valid for a year (the session's rig cert expires in 30 days: doctor warns)."""
    pki = Pki.create(tmp_path_factory.mktemp("doctor-pki"))
    cert, key = pki.issue("doctor-rig", days=365)
    return pki, cert, key


def uplink_cfg(tmp_path, broker, cert: Path, key: Path, ca: Path, **uplink) -> dict:
    cfg = agent_config(tmp_path, None, None, None)
    cfg["uplink"].update(
        {"endpoint": "localhost", "port": broker.port, "cert": str(cert), "key": str(key), "ca": str(ca), **uplink}
    )
    return cfg


@pytest.fixture()
def trusting_broker(tmp_path, good_cert):
    """mosquitto trusting the doctor PKI's CA, with TLS client certificates required."""
    from tests.support.broker import Broker

    b = Broker(tmp_path / "broker", good_cert[0]).start()
    yield b
    b.stop()


def test_healthy_installation_passes_one_line_per_check(tmp_path, trusting_broker, good_cert):
    pki, cert, key = good_cert
    cfg = uplink_cfg(tmp_path, trusting_broker, cert, key, pki.ca_cert)
    store = Store.open(cfg["store"]["path"])
    store.close()
    rc, out = cli(write(tmp_path, cfg))
    assert rc == 0, out
    lines = out.strip().splitlines()
    body = [ln for ln in lines[1:-1]]
    parsed = {m.group(2): (m.group(1).strip(), m.group(3)) for m in map(LINE.match, body) if m}
    assert len(parsed) == len(body), f"every check is one line: {body}"
    for name in (
        "config",
        "tls.cert",
        "tls.key.mode",
        "tls.key.match",
        "tls.ca",
        "endpoint.dns",
        "endpoint.tls",
        "driver.sim",
        "store.integrity",
        "store.disk",
        "clock",
    ):
        assert parsed[name][0] == "OK", (name, out)
    assert "accepted" in parsed["endpoint.tls"][1] and "days left" in parsed["tls.cert"][1]
    assert all("-> fix:" in ln for ln in body if not ln.startswith("OK"))
    assert lines[-1].endswith("0 failed")


def test_wrong_ca_fails_the_handshake(tmp_path, trusting_broker, good_cert):
    _pki, cert, key = good_cert
    other = Pki.create(tmp_path / "other-ca", name="other-ca")
    c = checks(write(tmp_path, uplink_cfg(tmp_path, trusting_broker, cert, key, other.ca_cert)))
    assert c["tls.ca"].status == "ok"  # a fine CA bundle, just not the endpoint's
    assert c["endpoint.tls"].status == "fail"
    assert "does not verify against uplink.ca" in c["endpoint.tls"].detail
    assert "AmazonRootCA1" in c["endpoint.tls"].fix


def _expired_cert(pki: Pki, key_path: Path, out: Path) -> Path:
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")]))
        .issuer_name(pki.ca_obj.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now - dt.timedelta(days=35))
        .sign(pki.ca_key_obj, hashes.SHA256())
    )
    out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


def test_expired_cert_fails_and_the_broker_rejects_it(tmp_path, trusting_broker, good_cert):
    pki, _, key = good_cert
    expired = _expired_cert(pki, key, tmp_path / "expired.crt")
    cfg = uplink_cfg(tmp_path, trusting_broker, expired, key, pki.ca_cert)
    c = checks(write(tmp_path, cfg))
    assert (
        c["tls.cert"].status == "fail" and "expired" in c["tls.cert"].detail and "35 days ago" in c["tls.cert"].detail
    )
    assert c["tls.key.match"].status == "ok"
    assert c["endpoint.tls"].status == "fail" and "rejected the client certificate" in c["endpoint.tls"].detail
    rc, out = cli(write(tmp_path, cfg))
    assert rc == 1 and "FAIL  tls.cert" in out


def test_world_readable_key_fails_with_the_chmod_fix(tmp_path, trusting_broker, good_cert):
    pki, cert, key = good_cert
    loose = tmp_path / "keys" / "device.key"
    loose.parent.mkdir(mode=0o700)
    shutil.copy(key, loose)
    os.chmod(loose, 0o644)
    c = checks(write(tmp_path, uplink_cfg(tmp_path, trusting_broker, cert, loose, pki.ca_cert)))
    assert c["tls.key.mode"].status == "fail" and "0644" in c["tls.key.mode"].detail
    assert c["tls.key.mode"].fix.startswith(f"chmod 600 {loose}")
    assert c["endpoint.tls"].status == "ok"  # the key works; it is just exposed


def test_key_of_another_cert_fails_and_skips_the_handshake(tmp_path, trusting_broker, good_cert):
    pki, cert, _ = good_cert
    _, other_key = pki.issue("someone-else", days=365)
    c = checks(write(tmp_path, uplink_cfg(tmp_path, trusting_broker, cert, other_key, pki.ca_cert)))
    assert c["tls.key.match"].status == "fail" and "not the private key" in c["tls.key.match"].detail
    assert c["endpoint.tls"].status == "fail" and "not tried" in c["endpoint.tls"].detail


def test_client_cert_the_broker_does_not_trust_is_reported_as_rejected(tmp_path, trusting_broker, good_cert):
    pki, _, _ = good_cert
    stranger = Pki.create(tmp_path / "stranger-ca", name="stranger-ca")
    cert, key = stranger.issue("stranger", days=365)
    c = checks(write(tmp_path, uplink_cfg(tmp_path, trusting_broker, cert, key, pki.ca_cert)))
    assert c["tls.cert"].status == "ok" and c["tls.key.match"].status == "ok"
    assert c["endpoint.tls"].status == "fail" and "rejected the client certificate" in c["endpoint.tls"].detail


def test_closed_port_and_missing_files(tmp_path, good_cert):
    pki, cert, key = good_cert

    class NoBroker:
        port = reserve_port()

    c = checks(write(tmp_path, uplink_cfg(tmp_path, NoBroker, cert, key, pki.ca_cert)))
    assert c["endpoint.dns"].status == "ok"
    assert c["endpoint.tls"].status == "fail" and "refused" in c["endpoint.tls"].detail
    c = checks(write(tmp_path, uplink_cfg(tmp_path, NoBroker, tmp_path / "nope.crt", key, pki.ca_cert)))
    assert c["tls.cert"].status == "fail" and "does not exist" in c["tls.cert"].detail
    assert c["endpoint.tls"].status == "fail"


def test_invalid_config_fails_with_every_problem(tmp_path):
    cfg = agent_config(tmp_path, None, None, None, rig="not a thing name!")
    cfg["store"]["synchronous"] = "SOMETIMES"
    rc, out = cli(write(tmp_path, cfg))
    assert rc == 1
    line = next(ln for ln in out.splitlines() if ln.startswith("FAIL  config"))
    assert "2 problem(s)" in line and "rig:" in line and "store.synchronous" in line and "config check" in line


@pytest.fixture()
def probe_registry(monkeypatch):
    for name, target in probe_drivers.REGISTRY.items():
        monkeypatch.setitem(registry.BUILTIN, name, target)


def test_device_probes_against_real_peers(tmp_path, probe_registry, monkeypatch):
    socat = shutil.which("socat")
    assert socat, "socat is not installed (apt-get install socat): the serial probe needs a pty pair"
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    pair = subprocess.Popen([socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        deadline = time.monotonic() + 10
        while not (a.exists() and b.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert a.exists(), "socat did not create the pty pair"
        drivers = [
            {"type": "serial-like", "name": "rs485", "port": str(a)},
            {"type": "serial-like", "name": "unplugged", "port": "/dev/serial/by-id/usb-not-there"},
            {"type": "tcp-like", "name": "cycler", "host": "127.0.0.1", "port": listener.getsockname()[1]},
            {"type": "tcp-like", "name": "off", "host": "127.0.0.1", "port": reserve_port()},
            {"type": "can-like", "name": "vbus", "interface": "virtual", "channel": "doctor-test"},
            {"type": "can-like", "name": "bms", "interface": "socketcan", "channel": "vcan-nope"},
            {"type": "hooked", "name": "own"},
            {"type": "hooked", "name": "buggy", "behaviour": "raise"},
            {"type": "hooked", "name": "stuck", "behaviour": "hang"},
        ]
        monkeypatch.setattr("agent.doctor.devices.PROBE_TIMEOUT_S", 1.0)
        conf = write(tmp_path, agent_config(tmp_path, None, None, None, drivers=drivers))
        with conf.open("a") as f:  # the shape of a Modbus driver: devices over TCP or RTU (one line shared)
            f.write(
                f'\n[[drivers]]\ntype = "modbus-like"\nname = "mb"\ndevices = [{{tcp = "127.0.0.1:'
                f'{listener.getsockname()[1]}"}}, {{rtu = "{a}"}}, {{rtu = "{a}"}}, {{tcp = "127.0.0.1:'
                f'{reserve_port()}"}}]\n'
            )
        c = checks(conf)
    finally:
        listener.close()
        pair.terminate()
        pair.wait(5)
    assert c["driver.rs485.port"].status in ("ok", "warn") and "opens" in c["driver.rs485.port"].detail
    assert c["driver.unplugged.port"].status == "fail" and "by-id" in c["driver.unplugged.port"].fix
    assert c["driver.cycler.host"].status == "ok"
    assert c["driver.off.host"].status == "fail" and "refused" in c["driver.off.host"].detail
    assert c["driver.vbus.channel"].status == "ok"
    assert c["driver.bms.channel"].status == "fail" and "ip link set vcan-nope up" in c["driver.bms.channel"].fix
    # Nested devices (a Modbus driver's list): each endpoint probed once, named by its place in the section.
    mb = {k: v for k, v in c.items() if k.startswith("driver.mb.")}
    assert sorted(mb) == ["driver.mb.devices[0].tcp", "driver.mb.devices[1].rtu", "driver.mb.devices[3].tcp"]
    assert mb["driver.mb.devices[0].tcp"].status == "ok" and mb["driver.mb.devices[3].tcp"].status == "fail"
    assert mb["driver.mb.devices[1].rtu"].status in ("ok", "warn")
    assert c["driver.own.bus"].status == "ok" and "driver.own.port" not in c  # the hook replaces generic probes
    assert c["driver.buggy"].status == "fail" and "hook exploded" in c["driver.buggy"].detail
    assert c["driver.stuck"].status == "fail" and "did not finish" in c["driver.stuck"].detail


@pytest.fixture()
def open_dir():
    """A directory other users can traverse, like /var/lib (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="doctor-store-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_store_integrity_disk_and_clock(tmp_path, open_dir, monkeypatch):
    base = open_dir
    cfg = agent_config(base, None, None, None)
    db = Path(cfg["store"]["path"])
    db.parent.mkdir(parents=True)
    db.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    c = checks(write(tmp_path, cfg))
    assert c["store.integrity"].status == "fail" and "restart" in c["store.integrity"].fix
    for p in db.parent.iterdir():
        p.unlink()

    # A store owned by the service user, checked by root: readable, and no root-owned -wal/-shm left behind.
    store = Store.open(db)
    from drivers.base import ReadingBatch

    future_ms = time.time_ns() // 1_000_000 + 3_600_000
    store.append(ReadingBatch.build(["c1"], [0], [future_ms], [3.7], [1.0], [25.0]))
    store.close()
    nobody = 65534
    for p in [db.parent, *db.parent.iterdir()]:  # as the service user would have made them
        os.chown(p, nobody, nobody)
    os.chmod(db.parent, 0o700)
    cfg["store"]["max_bytes"] = 10**16  # more than any disk here: doctor must say the disk fills first
    c = checks(write(tmp_path, cfg))
    assert c["store.integrity"].status == "ok" and "1 unsent readings" in c["store.integrity"].detail
    assert {p.stat().st_uid for p in db.parent.iterdir()} == {nobody}, list(db.parent.iterdir())
    assert os.geteuid() == 0
    assert c["store.disk"].status == "warn" and "lower store.max_bytes" in c["store.disk"].fix
    assert c["clock"].status == "warn" and "in the future" in c["clock"].detail

    monkeypatch.setattr("agent.doctor.system.CLOCK_FLOOR", dt.datetime(2999, 1, 1, tzinfo=dt.UTC))
    c = checks(write(tmp_path, cfg))
    assert c["clock"].status == "fail" and "timedatectl set-ntp true" in c["clock"].fix

    os.chmod(base, 0o700)  # the owner cannot reach its store any more
    c = checks(write(tmp_path, cfg))
    assert c["store.integrity"].status == "fail" and "must be able to reach" in c["store.integrity"].fix
