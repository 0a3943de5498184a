"""Service lifecycle figures: start to READY=1, SIGHUP to reloaded, SIGTERM to exit (broker up and down), doctor's
run time, and the unit's systemd-analyze exposure. The agent runs as a process, as systemd would run it, against a
local mosquitto with TLS client certificates; simulator driver, 8 cells at 10 Hz.

    .venv/bin/python bench/service.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.agentproc import to_toml
from tests.support.broker import Broker
from tests.support.pki import Pki

CONDITIONS = "agent process, simulator 8 cells x 10 Hz, mosquitto mTLS on loopback, 2-core shared machine"


def exposure() -> dict:
    p = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(ROOT / "systemd/battery-twin.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", p.stdout)
    return {
        "exposure": float(m.group(1)) if m else None,
        "conditions": "systemd-analyze security --offline=yes systemd/battery-twin.service (0 = best, 10 = worst)",
    }


class Run:
    def __init__(self, tmp: Path, broker: Broker, cert: Path, key: Path, ca: Path):
        self.tmp = tmp
        self.conf = tmp / "agent.toml"
        self.cfg = {
            "rig": "bench-rig",
            "store": {"path": str(tmp / "agent.db")},
            "uplink": {
                "endpoint": "localhost",
                "port": broker.port,
                "cert": str(cert),
                "key": str(key),
                "ca": str(ca),
                "flow_control": "none",
                "linger_ms": 200,
            },
            "drivers": [{"type": "simulator", "name": "sim", "cells": 8, "sample_hz": 10.0}],
        }
        self.conf.write_text(to_toml(self.cfg))
        self.sock_path = Path(tempfile.mkdtemp(prefix="btb-")) / "n.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.sock_path))
        self.log = open(tmp / "agent.log", "wb")  # noqa: SIM115 - lives as long as the agent process
        env = {**os.environ, "NOTIFY_SOCKET": str(self.sock_path), "PYTHONUNBUFFERED": "1"}
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(self.conf)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def wait_notify(self, key: str, timeout_s: float = 60.0) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536).decode()
            except TimeoutError:
                break
            if f"{key}=1" in data.splitlines():
                return time.perf_counter()
        raise RuntimeError(f"no {key}=1 within {timeout_s} s")

    def wait_log(self, text: str, timeout_s: float = 30.0) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in (self.tmp / "agent.log").read_text(errors="replace"):
                return time.perf_counter()
            time.sleep(0.01)
        raise RuntimeError(f"agent did not log {text!r}")

    def stop(self) -> tuple[float, int]:
        t = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(60)
        self.log.close()
        self.sock.close()
        shutil.rmtree(self.sock_path.parent, ignore_errors=True)
        return time.perf_counter() - t, rc


def lifecycle(runs: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-service-"))
    pki = Pki.create(tmp / "pki")
    cert, key = pki.issue("bench-rig", days=365)
    broker = Broker(tmp / "broker", pki).start()
    ready, reload_s, stop_up, stop_down = [], [], [], []
    try:
        for i in range(runs):
            (tmp / f"run{i}").mkdir()
            r = Run(tmp / f"run{i}", broker, cert, key, pki.ca_cert)
            ready.append(r.wait_notify("READY") - r.t0)
            r.wait_log("uplink connected")
            time.sleep(2.0)
            r.cfg["drivers"][0]["sample_hz"] = 5.0
            r.conf.write_text(to_toml(r.cfg))
            t = time.perf_counter()
            r.proc.send_signal(signal.SIGHUP)
            reload_s.append(r.wait_log("config reloaded") - t)
            time.sleep(1.0)
            dt, rc = r.stop()
            assert rc == 0
            stop_up.append(dt)
        broker.stop()
        for i in range(runs):
            (tmp / f"down{i}").mkdir()
            r = Run(tmp / f"down{i}", broker, cert, key, pki.ca_cert)
            r.wait_notify("READY")
            time.sleep(2.0)
            dt, rc = r.stop()
            assert rc == 0
            stop_down.append(dt)
        broker.start()
        conf = tmp / "run0" / "agent.toml"
        t = time.perf_counter()
        d = subprocess.run(
            [sys.executable, "-m", "agent", "doctor", "--config", str(conf)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        doctor_s = time.perf_counter() - t
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median
    return {
        "start_to_ready_s": round(med(ready), 2),
        "sighup_to_reloaded_s": round(med(reload_s), 3),
        "sigterm_to_exit_broker_up_s": round(med(stop_up), 2),
        "sigterm_to_exit_broker_down_s": round(med(stop_down), 2),
        "doctor_run_s": round(doctor_s, 2),
        "doctor_exit_code": d.returncode,
        "conditions": f"{CONDITIONS}; median of {runs} runs; TimeoutStopSec=30 in the unit",
    }


def main(runs: int = 3) -> dict:
    out = {"unit": exposure(), "lifecycle": lifecycle(runs)}
    for section, figures in out.items():
        for k, v in figures.items():
            if k != "conditions":
                print(f"{section}.{k:32s} {v}")
        print(f"  ({figures['conditions']})")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    main(ap.parse_args().runs)
