"""Pipeline benchmark: store ingest, end-to-end acknowledged throughput, wire bytes, latency, CPU and RSS.

Runs the real agent in this process against a local mosquitto with TLS client certificates (flow control NONE,
so the figure is the agent's own ceiling, not IoT Core's quota). Prints a table; ``main()`` returns the figures.

    .venv/bin/python bench/pipeline.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import parse_config
from agent.logs import setup_logging
from agent.pipeline import Agent
from agent.store import Store
from drivers.base import Driver, DriverConfig, DriverContext, ReadingBatch
from drivers.registry import BUILTIN as DRIVERS_BUILTIN
from tests.support.broker import Broker
from tests.support.pki import Pki


class SyntheticConfig(DriverConfig):
    type: Literal["bench-synthetic"] = "bench-synthetic"
    cells: int = 64
    sample_hz: float = 10.0


class SyntheticDriver(Driver):
    """Bench-only source: paced batches of plausible values that cost next to nothing to make, so the CPU
    figure is the agent's own (validate, store, uplink), not the physics simulator's."""

    config_model = SyntheticConfig

    def __init__(self, config: SyntheticConfig, ctx: DriverContext):
        super().__init__(config, ctx)
        self._cells = tuple(f"c{i:03d}" for i in range(config.cells))
        self._rng = np.random.default_rng(0)
        self._t0 = 0.0
        self._ticks = 0

    @property
    def cells(self) -> tuple[str, ...]:
        return self._cells

    async def open(self) -> None:
        self._t0 = time.monotonic()

    async def read(self) -> ReadingBatch:
        cfg = self.config
        self._ticks += 1
        wait = self._t0 + self._ticks / cfg.sample_hz - time.monotonic()  # type: ignore[attr-defined]
        if wait > 0:
            await asyncio.sleep(wait)
        n = len(self._cells)
        return ReadingBatch.build(
            self._cells,
            np.arange(n),
            self.ctx.clock_ms(),
            3.7 + self._rng.normal(0, 0.01, n),
            -2.5 + self._rng.normal(0, 0.01, n),
            25 + self._rng.normal(0, 0.1, n),
        )


DRIVERS_BUILTIN["bench-synthetic"] = "bench.pipeline:SyntheticDriver"


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def bench_store_ingest(tmp: Path, synchronous: str, cells: int = 64, ticks: int = 100, batches: int = 200) -> dict:
    """Readings/s committed into SQLite, one transaction per batch of cells x ticks readings."""
    store = Store.open(tmp / f"ingest-{synchronous}.db", synchronous=synchronous)
    rng = np.random.default_rng(0)
    n = cells * ticks
    b = ReadingBatch.build(
        tuple(f"c{i:03d}" for i in range(cells)),
        np.tile(np.arange(cells), ticks),
        np.repeat(1_790_000_000_000 + np.arange(ticks) * 100, cells),
        rng.uniform(3, 4, n),
        rng.uniform(-5, 5, n),
        rng.uniform(20, 30, n),
    )
    t0, c0 = time.perf_counter(), cpu_s()
    for _ in range(batches):
        store.append(b, "bench")
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    store.close()
    return {
        "readings_per_s": round(batches * n / wall),
        "readings_per_cpu_s": round(batches * n / cpu),
        "conditions": f"synchronous={synchronous}, batches of {n} readings ({cells} cells x {ticks} samples)",
    }


def agent_cfg(tmp: Path, broker: Broker, cert, key, ca, driver: str = "simulator", **sim) -> dict:
    return {
        "rig": "bench-rig",
        "store": {"path": str(tmp / f"agent-{time.monotonic_ns()}.db"), "synchronous": "FULL"},
        "uplink": {
            "endpoint": "localhost",
            "port": broker.port,
            "cert": str(cert),
            "key": str(key),
            "ca": str(ca),
            "flow_control": "none",
            "health_interval_s": 3600,
            "linger_ms": 1000,  # the latency figures are for a 1 s linger (the default until issue 18: 120 s now)
            **sim.pop("uplink", {}),
        },
        "drivers": [{"type": driver, "name": "sim", **sim}],
        "log": {"level": "WARNING"},
    }


async def run_agent(cfg: dict, seconds: float, warmup_s: float = 2.0) -> dict:
    agent = Agent(parse_config(cfg))
    await agent.start()
    up = agent.uplink
    assert up is not None and agent.link is not None
    await asyncio.wait_for(agent.link.connected.wait(), 20)
    await asyncio.sleep(warmup_s)
    r0, b0, c0, t0 = up.stats.acked_readings, up.stats.acked_bytes, cpu_s(), time.perf_counter()
    up.stats.latency_ms.clear()
    up.stats.latency_oldest_ms.clear()
    produced0 = sum(r.readings for r in agent.runners.values())
    await asyncio.sleep(seconds)
    r1, b1, c1, t1 = up.stats.acked_readings, up.stats.acked_bytes, cpu_s(), time.perf_counter()
    produced1 = sum(r.readings for r in agent.runners.values())
    lat = np.array(up.stats.latency_ms, dtype=float)
    lat_old = np.array(up.stats.latency_oldest_ms, dtype=float)
    st = await agent.worker.call(Store.stats)
    await agent.stop(drain_timeout_s=2.0)
    acked = r1 - r0

    def pct(a: np.ndarray, q: float):
        return round(float(np.percentile(a, q)), 1) if a.size else None

    return {
        "acked_readings_per_s": round(acked / (t1 - t0)),
        "produced_readings_per_s": round((produced1 - produced0) / (t1 - t0)),
        "cpu_pct_of_one_core": round(100 * (c1 - c0) / (t1 - t0), 1),
        "wire_bytes_per_reading": round((b1 - b0) / max(acked, 1), 1),
        "latency_newest_p50_ms": pct(lat, 50),
        "latency_newest_p99_ms": pct(lat, 99),
        "latency_oldest_p50_ms": pct(lat_old, 50),
        "latency_oldest_p99_ms": pct(lat_old, 99),
        "store_depth_at_end": st["store_depth_readings"],
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


async def run_drain(cfg: dict, backlog: int) -> dict:
    """Readings/s acknowledged while draining a backlog (an outage's worth of data) with no driver running."""
    store = Store.open(cfg["store"]["path"], synchronous="FULL")
    cells, ticks = 64, 250
    rng = np.random.default_rng(0)
    n = cells * ticks
    backlog = backlog // n * n
    for k in range(backlog // n):
        store.append(
            ReadingBatch.build(
                tuple(f"c{i:03d}" for i in range(cells)),
                np.tile(np.arange(cells), ticks),
                np.repeat(1_790_000_000_000 + (k * ticks + np.arange(ticks)) * 100, cells),
                rng.uniform(3, 4, n),
                rng.uniform(-5, 5, n),
                rng.uniform(20, 30, n),
            ),
            "b",
        )
    store.close()
    cfg = {**cfg, "drivers": []}
    agent = Agent(parse_config(cfg))
    c0, t0 = cpu_s(), time.perf_counter()
    await agent.start()
    up = agent.uplink
    assert up is not None
    marks: dict[int, tuple[float, int]] = {}  # steady-state window: from 10 % to 90 % of the backlog acknowledged
    while up.stats.acked_readings < backlog and time.perf_counter() - t0 < 300:
        for pct in (10, 90):
            if pct not in marks and up.stats.acked_readings >= backlog * pct / 100:
                marks[pct] = (time.perf_counter(), up.stats.acked_bytes)
        await asyncio.sleep(0.02)
    c1, t1 = cpu_s(), time.perf_counter()
    acked = up.stats.acked_readings
    await agent.stop(drain_timeout_s=2.0)
    (ta, ba), (tb, bb) = marks.get(10, (t0, 0)), marks.get(90, (t1, up.stats.acked_bytes))
    steady_bps = (bb - ba) / max(tb - ta, 1e-9)
    return {
        "acked_readings_per_s": round(acked / (t1 - t0)),
        "acked_readings_per_cpu_s": round(acked / (c1 - c0)),
        "cpu_pct_of_one_core": round(100 * (c1 - c0) / (t1 - t0), 1),
        "backlog": backlog,
        "steady_acked_kib_per_s": round(steady_bps / 1024, 1),
        "steady_fraction_of_iot_core_512kib_s": round(steady_bps / (512 * 1024), 3),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


SCENARIOS = {
    "drain": (
        "backlog of 1,000,000 readings (64 cells) drained with no driver running; compact envelope ~15 KB "
        "messages; synchronous=FULL; mosquitto on loopback over mTLS; SDK flow control NONE"
    ),
    "drain_iot_core_flow": (
        "backlog of 192,000 readings drained with the SDK's AWS IoT Core flow control ON "
        "(client-side 512 KiB/s and 100 publishes/s per connection) against mosquitto; backlog "
        "messages of ~59.5 KB (uplink.backlog_message_bytes); rate measured between 10 % and 90 % of the backlog acknowledged"
    ),
    "steady_51k": (
        "paced simulator 512 cells x 100 Hz = 51,200 readings/s through validate -> store -> uplink "
        "-> PUBACK -> mark sent; synchronous=FULL; linger 1000 ms; flow control NONE"
    ),
    "reference_64x10hz": (
        "reference load: 64 cells x 10 Hz from a bench-only synthetic driver (values cost "
        "~nothing to make, so this is the agent's own cost: validate, store, uplink, PUBACK); "
        "linger 1000 ms (at this load messages fill within it); synchronous=FULL; flow control NONE"
    ),
    "reference_64x10hz_physics_sim": (
        "the same 64 cells x 10 Hz from the physics simulator driver in the same "
        "process (ECM with 2 RC pairs, thermal, ageing): the whole process's cost"
    ),
}


def run_scenario(name: str, seconds: float) -> dict:
    """One scenario in this process (so CPU and RSS figures are its own)."""
    setup_logging("WARNING")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pki = Pki.create(tmp / "pki")
        cert, key = pki.issue("bench-rig")
        broker = Broker(tmp / "broker", pki).start()
        try:
            if name == "drain":
                res = asyncio.run(run_drain(agent_cfg(tmp, broker, cert, key, pki.ca_cert), 1_000_000))
            elif name == "drain_iot_core_flow":
                cfg = agent_cfg(tmp, broker, cert, key, pki.ca_cert)
                cfg["uplink"]["flow_control"] = "iot_core"
                res = asyncio.run(run_drain(cfg, 192_000))
            elif name == "steady_51k":
                res = asyncio.run(
                    run_agent(agent_cfg(tmp, broker, cert, key, pki.ca_cert, cells=512, sample_hz=100.0), seconds)
                )
            elif name == "reference_64x10hz":
                res = asyncio.run(
                    run_agent(
                        agent_cfg(
                            tmp, broker, cert, key, pki.ca_cert, driver="bench-synthetic", cells=64, sample_hz=10.0
                        ),
                        seconds,
                    )
                )
            else:
                res = asyncio.run(
                    run_agent(agent_cfg(tmp, broker, cert, key, pki.ca_cert, cells=64, sample_hz=10.0), seconds)
                )
        finally:
            broker.stop()
    res["conditions"] = SCENARIOS[name]
    return res


def main(seconds: float = 15.0) -> dict:
    setup_logging("WARNING")
    results: dict = {}
    with tempfile.TemporaryDirectory() as d:
        results["store_ingest_full"] = bench_store_ingest(Path(d), "FULL")
        results["store_ingest_normal"] = bench_store_ingest(Path(d), "NORMAL")
    for name in SCENARIOS:
        out = subprocess.run(
            [sys.executable, __file__, "--scenario", name, "--seconds", str(seconds)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if out.returncode != 0:
            results[name] = {"error": out.stderr[-2000:]}
            continue
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    results["machine"] = f"{os.cpu_count()} cores, {sys.platform}, python {sys.version.split()[0]}"
    return results


def print_table(results: dict) -> None:
    print(f"{'figure':58s} value")
    for section, figs in results.items():
        if not isinstance(figs, dict):
            print(f"{section:58s} {figs}")
            continue
        for k, v in figs.items():
            if k != "conditions":
                print(f"{section + '.' + k:58s} {v}")
        if "conditions" in figs:
            print(f"  ({figs['conditions']})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--scenario", choices=sorted(SCENARIOS))
    args = ap.parse_args()
    if args.scenario:
        print(json.dumps(run_scenario(args.scenario, args.seconds)))
        sys.exit(0)
    res = main(args.seconds)
    print(json.dumps(res, indent=2) if args.json else "", end="")
    print_table(res)
