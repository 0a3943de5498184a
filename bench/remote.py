"""Remote config and model updates over the real connection: shadow delta to applied-and-reported, and model job
(notify-next) to SUCCEEDED for a 1 MB model. The agent runs as ``battery-twin run``; mosquitto with mTLS stands in
for IoT Core's broker and ``tests/support/iotcloud.py`` for the Shadow and Jobs services (a mock of AWS: the
service side costs microseconds here, against tens of milliseconds of network and service time in AWS).

    .venv/bin/python bench/remote.py [--changes 20] [--jobs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.remote.conftest import public_line
from tests.remote.modelkit import serve_job, variant
from tests.support.agentproc import to_toml
from tests.support.awsiot import Services
from tests.support.broker import Broker
from tests.support.https import FileServer
from tests.support.iotcloud import IotCloud
from tests.support.pki import Pki

RIG = "bench-rig"
CONDITIONS = (
    "agent process (simulator 8 cells x 10 Hz, twin on), mosquitto mTLS and the shadow/jobs stand-in on loopback, "
    "confirm_s = 0 (the figure is the agent's own work; add confirm_s in the field), 2-core shared machine"
)


def pct(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "p50_ms": round(statistics.median(xs) * 1000, 1),
        "p99_ms": round(xs[min(len(xs) - 1, int(0.99 * len(xs)))] * 1000, 1),
        "n": len(xs),
    }


def wait(cond, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.002)


def main(changes: int = 20, jobs: int = 10) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    pki = Pki.create(tmp / "pki")
    broker = Broker(tmp / "broker", pki).start()
    files = FileServer(pki).start()
    cloud = IotCloud(broker.port, pki.ca_cert, *pki.issue("aws-stand-in"), Services(files.presign)).start()
    key = Ed25519PrivateKey.generate()
    cert, pkey = pki.issue(RIG)
    cfg = {
        "rig": RIG,
        "store": {"path": str(tmp / "store" / "agent.db")},
        "uplink": {"endpoint": "localhost", "port": broker.port, "cert": str(cert), "key": str(pkey)},
        "drivers": [{"type": "simulator", "name": "sim", "cells": 8, "sample_hz": 10.0}],
        "remote": {
            "shadow": True,
            "allow": ["validate"],
            "confirm_s": 0.0,
            "jobs": True,
            "signing_keys": [public_line(key)],
            "hosts": ["127.0.0.1"],
            "ca": str(files.ca),
        },
    }
    cfg["uplink"]["ca"] = str(pki.ca_cert)
    (tmp / "agent.toml").write_text(to_toml(cfg))
    log = open(tmp / "agent.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(tmp / "agent.toml")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait(lambda: b"remote: shadow" in (tmp / "agent.log").read_bytes(), 60)
        shadow: list[float] = []
        for i in range(changes):
            t0 = time.perf_counter()
            v = cloud.set_desired(RIG, {"validate": {"voltage_v": {"max": 4.5 + i / 1000}}})
            wait(lambda v=v: cloud.reported(RIG).get("status", {}).get("desired_version") == v, 30)
            shadow.append(time.perf_counter() - t0)
        models = [variant(tmp / "m", f"b{i}", pad_bytes=1024**2 - 8192) for i in range(jobs)]
        size_b = models[0].stat().st_size
        docs = [serve_job(m, key, files) for m in models]
        job_s: list[float] = []
        for i, doc in enumerate(docs):
            t0 = time.perf_counter()
            cloud.create_job(RIG, f"bench-{i}", doc)
            e = cloud.wait_job(RIG, f"bench-{i}", 60)
            if e.status != "SUCCEEDED":
                raise RuntimeError(f"job bench-{i}: {e.status} {e.details}")
            job_s.append(time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(30)
        cloud.stop()
        files.stop()
        broker.stop()
    out = {
        "shadow_delta_to_reported": {**pct(shadow), "conditions": CONDITIONS},
        "model_job_to_succeeded": {**pct(job_s), "model_bytes": size_b, "conditions": CONDITIONS},
    }
    for k, v in out.items():
        print(k, {a: b for a, b in v.items() if a != "conditions"})
    print(f"  ({CONDITIONS})")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=10)
    a = ap.parse_args()
    main(a.changes, a.jobs)
