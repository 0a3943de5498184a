"""Field-driver throughput: CAN frames decoded (and stored) per second, Modbus registers per second over TCP.

    .venv/bin/python bench/drivers.py            # all figures, about 30 s
    .venv/bin/python bench/drivers.py --quick    # shorter runs

Goal (issue 4): >= 32,000 CAN frames/s on one core (four saturated 1 Mbit/s buses of 8-byte frames).
Every figure is printed with the conditions it was measured under; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import can
import cantools
import numpy as np
import pymodbus

from agent.store import Store
from drivers.base import DriverContext
from drivers.can import CanConfig, CanDriver
from drivers.can.dbcmap import FrameDecoder, Updates
from drivers.can.emulator import CanEmulator
from drivers.can.profile import load_profile
from drivers.emulator import RigFeed, basic_rig
from drivers.modbus import ModbusConfig, ModbusDriver
from drivers.modbus.profile import load_profile as load_modbus_profile
from drivers.modbus.regmap import RegisterMap
from drivers.stale import Freshness


def conditions() -> str:
    return (
        f"python {platform.python_version()}, {os.cpu_count()} cores ({platform.machine()}), "
        f"python-can {can.__version__}, cantools {cantools.__version__}, pymodbus {pymodbus.__version__}, "
        f"numpy {np.__version__}; machine shared with other work: figures are noisy"
    )


def bms_frames(n: int) -> list[can.Message]:
    """The frames a 16-cell bms16 BMS sends, in its own proportions (per 100 ms: 4 voltage groups, 1 status,
    and every 1000 ms 4 temperature groups), with values from a simulated rig."""
    emu = CanEmulator(RigFeed(basic_rig(16, seed=1)), "bms16", "virtual", "unused")
    _, values = emu.feed.snapshot()
    cycle = []
    for period, fr in emu.frames:
        reps = round(1.0 / period)
        cycle += [
            can.Message(arbitration_id=fr.msg.frame_id, data=emu._payload(fr, values), is_extended_id=False)
            for _ in range(reps)
        ]
    out = (cycle * (n // len(cycle) + 1))[:n]
    return out


def bench_decode(n: int) -> dict:
    frames = bms_frames(n)
    dec = FrameDecoder(load_profile("bms16"))
    fresh = Freshness(16, dec.stale_after_ms, 5000)
    upd = Updates()
    t0 = time.perf_counter()
    for m in frames:
        dec.decode(m.arbitration_id, m.is_extended_id, m.data, upd)
        if len(upd.values) >= 2048:
            upd.apply(fresh, 0)
    upd.apply(fresh, 0)
    dt = time.perf_counter() - t0
    print(
        f"CAN decode (cantools, bms16 mix, no transport): {n / dt:,.0f} frames/s "
        f"({n:,} frames in {dt:.2f} s, one thread)"
    )
    return {"frames_per_s": round(n / dt), "conditions": f"{n} bms16 frames, cantools decode + mapping, one thread"}


def bench_decode_store(n: int, tmp: Path) -> dict:
    """Decode, and every 100 ms of bus time (at 4 saturated 1 Mbit/s buses = 3,200 frames) sample 4 BMSs and
    store the rows (agent Store, SQLite WAL, synchronous=NORMAL)."""
    frames = bms_frames(n)
    loaded = load_profile("bms16")
    decs = [FrameDecoder(loaded) for _ in range(4)]
    freshes = [Freshness(16, decs[0].stale_after_ms, 5000) for _ in range(4)]
    cells = [tuple(f"b{k}-c{i + 1:02d}" for i in range(16)) for k in range(4)]
    store = Store.open(tmp / "bench-can.db", synchronous="NORMAL")
    upd = Updates()
    per_sample = 3200
    rows = 0
    t0 = time.perf_counter()
    ts = 1_700_000_000_000
    for i, m in enumerate(frames):
        k = i & 3  # four buses, one BMS each
        decs[k].decode(m.arbitration_id, m.is_extended_id, m.data, upd)
        upd.apply(freshes[k], ts) if len(upd.values) >= 256 else None
        if i % per_sample == per_sample - 1:
            upd.apply(freshes[k], ts)
            ts += 100
            for b in range(4):
                batch = freshes[b].batch(cells[b], ts)
                store.append(batch, "can")
                rows += len(batch)
    dt = time.perf_counter() - t0
    store.close()
    print(
        f"CAN decode + sample at 10 Hz + store: {n / dt:,.0f} frames/s ({n:,} frames = {n / 32000:.1f} s of four "
        f"saturated buses, 4 BMSs x 16 cells, {rows:,} rows stored, one thread, SQLite synchronous=NORMAL)"
    )
    return {
        "frames_per_s": round(n / dt),
        "rows_stored": rows,
        "conditions": "decode, sample 4 BMSs x 16 cells every 3,200 frames (100 ms of 4 saturated buses), "
        "agent Store, synchronous=NORMAL, one thread",
    }


def bench_virtual_bus(seconds: float, tmp: Path, offered_per_s: int = 32_000) -> dict:
    """The real CanDriver (reader thread) on python-can's virtual bus while a sender thread offers
    ``offered_per_s`` frames/s (four saturated 1 Mbit/s buses) in 10 ms bursts; the driver's sampled rows are
    stored. Sender, reader and the event loop share one process (one GIL), and python-can's virtual bus deep-copies
    every frame: a harsher setting than a kernel socket. Reports whether the driver keeps up."""
    channel = f"bench-{time.monotonic_ns()}"
    frames = bms_frames(20_000)
    cfg = CanConfig.model_validate(
        {
            "type": "can",
            "interface": "virtual",
            "channel": channel,
            "profile": "bms16",
            "sample_hz": 10,
            "bitrate": None,
        }
    )
    store = Store.open(tmp / "bench-vbus.db", synchronous="NORMAL")
    stop = threading.Event()
    sent = [0]

    def sender() -> None:
        bus = can.Bus(interface="virtual", channel=channel)
        burst = offered_per_s // 100
        i, nxt = 0, time.perf_counter()
        while not stop.is_set():
            for _ in range(burst):
                bus.send(frames[i % len(frames)])
                i += 1
            sent[0] = i
            nxt += 0.01
            time.sleep(max(0.0, nxt - time.perf_counter()))
        bus.shutdown()

    async def run() -> tuple[int, int, int, float]:
        drv = CanDriver(cfg, DriverContext(emit=lambda e: None))
        await drv.open()
        th = threading.Thread(target=sender, daemon=True)
        th.start()
        rows = 0
        t0, c0 = time.perf_counter(), time.process_time()
        d0, s0 = drv.decoded, sent[0]
        while time.perf_counter() - t0 < seconds:
            b = await drv.read()
            store.append(b, "can")
            rows += len(b)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        decoded, offered = drv.decoded - d0, sent[0] - s0
        stop.set()
        th.join()
        await drv.close()
        return decoded, offered, rows, dt, cpu

    decoded, offered, rows, dt, cpu = asyncio.run(run())
    store.close()
    print(
        f"CAN end to end, virtual bus, {offered_per_s:,} frames/s offered: {offered / dt:,.0f} frames/s sent, "
        f"{decoded / dt:,.0f} frames/s decoded by the driver ({100 * decoded / max(offered, 1):.0f} %), "
        f"{rows / dt:,.0f} rows/s stored, process CPU {cpu / dt:.2f} cores incl. the sender ({seconds:g} s)"
    )
    return {
        "offered_per_s": round(offered / dt),
        "decoded_per_s": round(decoded / dt),
        "kept_up_pct": round(100 * decoded / max(offered, 1), 1),
        "rows_per_s": round(rows / dt),
        "process_cpu_cores": round(cpu / dt, 2),
        "conditions": f"CanDriver on python-can's virtual bus, {offered_per_s} frames/s offered in 10 ms bursts "
        "by a sender thread in the same process (one GIL), sample_hz 10, rows stored",
    }


def bench_reader_prefilled(n: int) -> dict:
    """The driver's own reader loop (python-can recv, cantools decode, freshness update) draining a virtual-bus
    queue filled beforehand, so the sender's cost is not in the figure: what one reader thread can take."""
    channel = f"bench-pre-{time.monotonic_ns()}"
    cfg = CanConfig.model_validate(
        {"type": "can", "interface": "virtual", "channel": channel, "profile": "bms16", "bitrate": None}
    )
    drv = CanDriver(cfg, DriverContext(emit=lambda e: None))
    drv.bus = can.Bus(interface="virtual", channel=channel)
    tx = can.Bus(interface="virtual", channel=channel)
    for m in bms_frames(n):
        tx.send(m)
    th = threading.Thread(target=drv._reader, daemon=True)
    t0 = time.perf_counter()
    th.start()
    while drv.decoded < n and time.perf_counter() - t0 < 120:
        time.sleep(0.005)
    dt = time.perf_counter() - t0
    drv._stop.set()
    th.join()
    tx.shutdown()
    drv.bus.shutdown()
    print(
        f"CAN reader thread on a pre-filled virtual bus: {drv.decoded / dt:,.0f} frames/s received, decoded and "
        f"applied ({drv.decoded:,} frames, one thread)"
    )
    return {
        "frames_per_s": round(drv.decoded / dt),
        "conditions": "CanDriver reader loop (recv + decode + freshness) draining a pre-filled virtual bus",
    }


DENSE = """name = "dense"
cells = 125
function = "holding"
[[registers]]
address = 0
unit = "mV"
field = "voltage_v"
count = 125
"""


def bench_modbus(seconds: float, tmp: Path, profile: str, devices: int) -> dict:
    """The real ModbusDriver polling as fast as it can (poll interval 1 ms) an emulator in its own process."""
    ids = ",".join(str(i) for i in range(1, devices + 1))
    emu = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "emulate",
            "modbus",
            "--tcp",
            "127.0.0.1:0",  # a free port, named in the banner
            "--devices",
            ids,
            "--profile",
            profile,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = emu.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("emulating"):
            raise SystemExit(f"emulator did not start: {line}")
        port = int(line.split(" on tcp 127.0.0.1:")[1].split(",")[0])
        cfg = ModbusConfig.model_validate(
            {
                "type": "modbus",
                "poll_interval_s": 0.001,
                "timeout_s": 1.0,
                "devices": [
                    {"name": f"d{i}", "profile": profile, "device_id": i, "tcp": f"127.0.0.1:{port}"}
                    for i in range(1, devices + 1)
                ],
            }
        )

        async def run() -> tuple[dict, float, int]:
            drv = ModbusDriver(cfg, DriverContext(emit=lambda e: None))
            await drv.open()
            await asyncio.sleep(0.5)
            await drv.read()  # drop what piled up while warming up
            r0 = {n: d["requests"] for n, d in drv.status()["devices"].items()}
            t0 = time.perf_counter()
            rows = 0
            while time.perf_counter() - t0 < seconds:
                rows += len(await drv.read())
            dt = time.perf_counter() - t0
            st = drv.status()["devices"]
            await drv.close()
            return {n: st[n]["requests"] - r0[n] for n in st}, dt, rows

        reqs, dt, rows = asyncio.run(run())
        rm = RegisterMap(load_modbus_profile(profile))
        per_req = rm.n_registers / len(rm.blocks)
        total = sum(reqs.values())
        print(
            f"Modbus TCP loopback, profile {Path(profile).stem} ({rm.n_registers} registers in {len(rm.blocks)} "
            f"reads per poll), {devices} device(s), one connection each: {total / dt:,.0f} requests/s, "
            f"{total * per_req / dt:,.0f} registers/s, {rows / dt:,.0f} rows/s "
            f"(emulator = pymodbus server in its own process; {seconds:g} s)"
        )
        return {
            "requests_per_s": round(total / dt),
            "registers_per_s": round(total * per_req / dt),
            "conditions": f"{devices} device(s) x {rm.n_registers} registers in {len(rm.blocks)} reads, poll "
            "interval 1 ms, TCP loopback, emulator in its own process",
        }
    finally:
        emu.send_signal(signal.SIGTERM)
        emu.wait(10)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args([] if argv is None else argv)
    secs = 2.0 if args.quick else 5.0
    n = 100_000 if args.quick else 300_000
    print(f"conditions: {conditions()}")
    out: dict = {"conditions": conditions()}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        out["can_decode"] = bench_decode(n)
        out["can_decode_store"] = bench_decode_store(n, tmp)
        out["can_reader_prefilled"] = bench_reader_prefilled(n // 2)
        out["can_virtual_bus"] = bench_virtual_bus(secs, tmp)
        dense = tmp / "dense.toml"
        dense.write_text(DENSE)
        out["modbus_tcp_bms16_1dev"] = bench_modbus(secs, tmp, "bms16", 1)
        out["modbus_tcp_bms16_4dev"] = bench_modbus(secs, tmp, "bms16", 4)
        out["modbus_tcp_dense_4dev"] = bench_modbus(secs, tmp, str(dense), 4)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
