"""arm64 (the Raspberry Pi) proven under emulation rather than assumed: a Debian bookworm arm64 root
(container/arm64-root.sh, cached in /var/cache/battery-twin) holding the locked edge install, this checkout's
battery-twin installed by pip inside it, and then, all under qemu-user-static: the installed packages are the lock,
the shipped ONNX models give the x86_64 numbers within 1e-6, `config check` and `doctor` pass, and the agent on the
simulator publishes for 30 s over mTLS to the host's test mosquitto with nothing missing and no seq reused. /proc
and /sys are mounted in a private mount namespace per command, so nothing stays mounted under the cached root
(checked at the end)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import agent
from tests.conftest import ROOT, agent_config
from tests.container.support import (
    CACHE,
    PROBE,
    audit,
    host_probe,
    installed_vs_lock,
    max_abs_diff,
    require_tools,
    run_group,
)
from tests.reliability.common import committed_max_seq, report
from tests.support.agentproc import to_toml

# A fresh machine builds the arm64 root first (minutes under emulation; cached after).
pytestmark = pytest.mark.timeout(1800)
SCRIPT = ROOT / "container" / "arm64-root.sh"
VENV = "/opt/battery-twin/venv"
RUN_S = 30.0
DOCTOR_LINE = re.compile(r"^(OK  |WARN|FAIL)  (\S+) +(.+)$")


def in_root(*cmd: str, timeout_s: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([str(SCRIPT), "run", *cmd], capture_output=True, text=True, timeout=timeout_s)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} under arm64: exit {p.returncode}\n{p.stdout[-3000:]}{p.stderr[-3000:]}")
    return p


def mounts_under(root: Path) -> list[str]:
    return [
        f.split()[1] for f in Path("/proc/self/mounts").read_text().splitlines() if f.split()[1].startswith(str(root))
    ]


class Arm64:
    def __init__(self, root: Path, work: Path):
        self.root = root
        self.work = work  # a folder of this test run inside the root (host path)

    def inside(self, path: Path) -> str:
        """The path as the emulated system sees it."""
        return "/" + str(path.relative_to(self.root))


@pytest.fixture(scope="module")
def arm64(tmp_path_factory):
    """The cached root, with this checkout's battery-twin installed by pip inside it. Held under a lock for the
    module: another checkout's make test would install its own battery-twin into the same cached venv."""
    require_tools("mmdebstrap", "qemu-aarch64-static", "update-binfmts", "unshare", "chroot")
    CACHE.mkdir(parents=True, exist_ok=True)
    lock = open(CACHE / ".arm64-smoke.lock", "w")  # noqa: SIM115 - held for the whole module
    fcntl.flock(lock, fcntl.LOCK_EX)
    t0 = time.monotonic()
    p = run_group([str(SCRIPT), "build"], timeout_s=1500)
    if p.returncode != 0:
        raise AssertionError(f"arm64-root.sh build failed:\n{p.stdout[-2000:]}{p.stderr[-4000:]}")
    root = Path(p.stdout.strip().splitlines()[-1])
    t_root = time.monotonic() - t0
    # This checkout's battery-twin: a wheel built on the host (pure Python) from a copy of the sources, installed by
    # pip inside the root and compiled by the host (arm64-root.sh install); skipped when the root already holds exactly these sources (a re-run on the same tree).
    src = tmp_path_factory.mktemp("arm64-src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("agent", "drivers", "simulator", "cloud"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    digest = hashlib.sha256()
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes())
    marker = root / VENV.lstrip("/") / "battery-twin-source.sha256"
    a = Arm64(root, root / "tmp" / f"smoke-{uuid.uuid4().hex[:8]}")
    a.work.mkdir(parents=True)
    installed = marker.exists() and marker.read_text() == digest.hexdigest()
    if not installed:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(src / "dist"), str(src)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        wheel = next((src / "dist").glob("battery_twin-*.whl"))
        marker.unlink(missing_ok=True)
        p = run_group([str(SCRIPT), "install", str(wheel)], timeout_s=600)  # pip inside the root, under qemu
        if p.returncode != 0:
            raise AssertionError(f"arm64-root.sh install failed:\n{p.stdout[-2000:]}{p.stderr[-4000:]}")
        marker.write_text(digest.hexdigest())
    report(
        "arm64_setup",
        root_s=round(t_root, 1),
        project_install_s=round(time.monotonic() - t0 - t_root, 1),
        project_already_installed=installed,
    )
    try:
        yield a
    finally:
        shutil.rmtree(a.work, ignore_errors=True)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    assert mounts_under(root) == [], f"left mounted under the cached arm64 root: {mounts_under(root)}"


def test_arm64_smoke_under_emulation(arm64, broker, subscriber, pki, rig_cert):
    """The agent publishes for 30 s over mTLS while the other checks run beside it, as they would on a live Pi
    (and because every Python start costs seconds under emulation, the 30 s are the time the checks take)."""
    certs = arm64.work / "certs"
    certs.mkdir()
    for src, name in ((rig_cert[0], "device.pem.crt"), (rig_cert[1], "private.pem.key"), (pki.ca_cert, "ca.pem")):
        shutil.copy(src, certs / name)
    (certs / "private.pem.key").chmod(0o600)
    cfg = agent_config(arm64.work, broker, rig_cert, pki)
    cfg["store"]["path"] = arm64.inside(arm64.work / "store" / "agent.db")
    cfg["uplink"].update({k: arm64.inside(certs / n) for k, n in
                          (("cert", "device.pem.crt"), ("key", "private.pem.key"), ("ca", "ca.pem"))})  # fmt: skip
    conf = arm64.work / "agent.toml"
    conf.write_text(to_toml(cfg))
    shutil.copy(PROBE, arm64.work / PROBE.name)
    bt = f"{VENV}/bin/battery-twin"
    log_path = arm64.work / "agent.log"

    def agent_log() -> str:
        return log_path.read_text(errors="replace")

    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(SCRIPT), "run", bt, "run", "--config", arm64.inside(conf)],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        # `config check` prints the effective config.
        checked = in_root(bt, "config", "check", arm64.inside(conf))
        assert json.loads(checked.stdout)["rig"] == cfg["rig"]

        # The installed packages are the lock; the shipped models give the x86_64 numbers.
        got = json.loads(in_root(f"{VENV}/bin/python", arm64.inside(arm64.work / PROBE.name)).stdout)
        assert got["machine"] == "aarch64"
        diff = installed_vs_lock(got["distributions"], agent.__version__)
        assert diff == {"not locked": [], "locked, not installed": []}, diff
        host = host_probe()
        worst = max_abs_diff(got, host)
        report("arm64_onnx", max_abs_diff=worst, arm64=got["cycle_life"], x86_64=host["cycle_life"])
        assert host["machine"] == "x86_64" and worst <= 1e-6, (got, host)

        subscriber.wait_for(lambda: "uplink connected" in agent_log() or proc.poll() is not None, 240,
                            "the arm64 agent to connect")  # fmt: skip
        assert proc.poll() is None, agent_log()[-3000:]
        connected_at = time.monotonic()

        # `doctor` on the running installation: config, TLS files, a TLS handshake with the broker, store, clock.
        doctor = in_root(bt, "doctor", "--config", arm64.inside(conf), check=False)
        status = {m.group(2): m.group(1).strip() for m in map(DOCTOR_LINE.match, doctor.stdout.splitlines()) if m}
        assert doctor.returncode == 0 and "FAIL" not in status.values(), doctor.stdout + doctor.stderr
        for name in ("config", "tls.key.match", "tls.ca", "endpoint.tls", "store.integrity", "store.disk", "clock"):
            assert status.get(name) == "OK", (name, doctor.stdout)

        time.sleep(max(0.0, RUN_S - (time.monotonic() - connected_at)))
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    assert code == 0 and "agent stopped" in agent_log(), agent_log()[-3000:]
    upto = committed_max_seq(arm64.work / "store" / "agent.db")
    subscriber.wait_for(lambda: not audit(subscriber, upto).missing, 60, f"every seq up to {upto} at the broker")
    a = audit(subscriber, upto)
    report(
        "arm64_agent",
        published_s=round(time.monotonic() - connected_at, 1),
        start_to_connected_s=round(connected_at - t0, 1),
        committed=upto,
        received=a.received,
    )
    # 4 cells x 10 Hz for at least 30 s: over 1,200 readings, each at the broker once or more, none with two contents.
    assert upto >= 4 * 10 * RUN_S and a.missing == [] and a.reused == {}, (upto, a.missing[:20], a.reused)
