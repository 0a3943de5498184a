"""Shared by the container and arm64 tests: the lock, podman, and what a run proves at the broker."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from packaging.utils import canonicalize_name

from agent.uplink.envelope import decode_telemetry
from tests.conftest import ROOT

LOCK = ROOT / "container" / "requirements-edge.txt"
TRAINING_PACKAGES = ("scikit-learn", "skl2onnx", "onnx", "pyarrow", "matplotlib", "scipy", "pandas", "tqdm")


def read_lock() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) from the pip requirements file in --require-hashes form."""
    text = re.sub(r"\\\n\s*", " ", LOCK.read_text())
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *opts = line.split()
        name, _, version = spec.partition("==")
        out[canonicalize_name(name)] = (version, [o.removeprefix("--hash=sha256:") for o in opts])
    return out


# ---------------------------------------------------------------- podman
PODMAN = ROOT / "container" / "podman.sh"
CACHE = Path(os.environ.get("BATTERY_TWIN_CACHE", "/var/cache/battery-twin"))


def require_tools(*tools: str) -> None:
    """Fail (never skip) naming what is missing: `make test` installs these as root (TEST_SYSTEM_PACKAGES)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [t for t in tools if shutil.which(t, path=path) is None]
    if missing:
        raise AssertionError(
            f"{', '.join(missing)} not installed: the container tests need podman, runc, mmdebstrap, "
            "qemu-user-static and binfmt-support (`make test` installs them when run as root)"
        )
    if os.geteuid() != 0:
        raise AssertionError("the container tests run podman and chroot as root (podman as root is what works here)")


def podman(*args: str, timeout_s: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(PODMAN), *args], capture_output=True, text=True, timeout=timeout_s, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {p.returncode}:\n{p.stdout[-2000:]}{p.stderr[-3000:]}")
    return p


def build_image(arch: str, tag: str, workdir: Path) -> str:
    """container/image.sh (base cached, layers cached); returns the built image id."""
    iid = workdir / f"iid-{arch}"
    env = {**os.environ, "IMAGE": tag, "IIDFILE": str(iid)}
    p = run_group([str(ROOT / "container" / "image.sh"), arch], timeout_s=1500, env=env)
    if p.returncode != 0:
        raise AssertionError(
            f"container/image.sh {arch} failed ({p.returncode}):\n{p.stdout[-3000:]}{p.stderr[-5000:]}"
        )
    print(p.stdout.strip().splitlines()[-1])
    return iid.read_text().strip()


# ---------------------------------------------------------------- what the broker saw
@dataclass
class Audit:
    upto: int
    received: int
    missing: list[int]
    reused: dict[int, list[tuple[str, int]]]  # seq -> the different (cell, ts) it was sent with

    @property
    def duplicates(self) -> int:
        return self.received - (self.upto - len(self.missing))


def audit(subscriber, upto: int) -> Audit:
    """Every seq 1..upto at the broker exactly as committed: none missing, none carrying two different readings
    (a seq reused after a crash). Redeliveries of the same reading are at-least-once, allowed and counted."""
    seen: dict[int, set[tuple[str, int]]] = {}
    received = 0
    for topic, payload in subscriber.snapshot():
        if topic.endswith("/telemetry"):
            for r in decode_telemetry(payload):
                received += 1
                seen.setdefault(int(r["seq"]), set()).add((str(r["cell"]), int(r["ts"])))
    missing = [s for s in range(1, upto + 1) if s not in seen]
    reused = {s: sorted(v) for s, v in seen.items() if len(v) > 1}
    return Audit(upto, received, missing, reused)


# ---------------------------------------------------------------- the shipped models on every platform
PROBE = Path(__file__).with_name("platform_probe.py")


def host_probe() -> dict:
    """platform_probe.py run by this interpreter (the x86_64 reference)."""
    p = subprocess.run([sys.executable, str(PROBE)], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(p.stdout)


def installed_vs_lock(distributions: dict[str, str], project_version: str) -> dict[str, list]:
    """What differs between installed distributions and the lock (plus battery-twin itself); empty lists = equal."""
    installed = {canonicalize_name(k): v for k, v in distributions.items()}
    expected = {name: version for name, (version, _) in read_lock().items()} | {"battery-twin": project_version}
    return {
        "not locked": sorted(set(installed.items()) - set(expected.items())),
        "locked, not installed": sorted(set(expected.items()) - set(installed.items())),
    }


def max_abs_diff(a: dict, b: dict) -> float:
    """Largest absolute difference between the model outputs of two platform_probe runs."""
    worst = 0.0
    for key in ("cycle_life", "soh_capacity_ah", "soh_eol_cycles"):
        x, y = np.asarray(a[key], dtype=float), np.asarray(b[key], dtype=float)
        assert x.shape == y.shape, (key, x.shape, y.shape)
        assert np.array_equal(np.isnan(x), np.isnan(y)), (key, x, y)  # no forecast on one side only
        worst = max(worst, float(np.nanmax(np.abs(x - y), initial=0.0)))
    return worst


def run_group(cmd: list[str], timeout_s: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own session; on timeout kill the whole group (mmdebstrap, pip under qemu), not only the
    script: nothing may keep running after the test."""
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env
    ) as p:
        try:
            out, err = p.communicate(timeout=timeout_s)
        except BaseException:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)
