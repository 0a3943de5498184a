"""``battery-twin emulate ...`` as a user runs it (a separate process), read by the drivers over the real
transport: the command serves the rig it says it serves, stops on SIGTERM, and refuses to expose Modbus beyond
loopback unless told to."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from drivers.base import DriverContext
from drivers.can import CanConfig, CanDriver
from drivers.modbus import ModbusConfig, ModbusDriver
from drivers.serial import SerialConfig, SerialDriver
from tests.drivers.support import EventLog, read_until_batch


class Emulate:
    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "emulate", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_banner(self, timeout_s: float = 20.0) -> str:
        deadline = time.monotonic() + timeout_s
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            if line.startswith("emulating"):
                return line
            if self.proc.poll() is not None:
                break
        raise AssertionError(f"no banner from emulate (rc={self.proc.poll()}): {line}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("emulate did not stop on SIGTERM") from None
        return self.proc.returncode


@pytest.fixture()
def emulate():
    procs: list[Emulate] = []

    def start(*args: str) -> Emulate:
        e = Emulate(*args)
        procs.append(e)
        return e

    yield start
    for e in procs:
        if e.proc.poll() is None:
            e.proc.kill()
            e.proc.wait()


def _read(driver, cells: int):
    """The latest complete row of every cell, read until each of ``cells`` cells has one."""
    latest: dict[str, np.ndarray] = {}

    def keep(b) -> bool:
        for r in range(len(b)):
            row = np.array([b.voltage_v[r], b.current_a[r], b.temperature_c[r]])
            if np.isfinite(row).all():
                latest[b.cells[b.cell[r]]] = row
        return len(latest) >= cells

    async def go():
        await driver.open()
        try:
            await read_until_batch(driver, keep, 20, f"a complete row from each of {cells} cells")
        finally:
            await driver.close()

    asyncio.run(go())
    return latest


def _plausible(latest: dict[str, np.ndarray], n: int) -> None:
    assert len(latest) == n
    v = np.array(list(latest.values()))
    assert ((v[:, 0] > 2.4) & (v[:, 0] < 4.3)).all(), v[:, 0]
    assert (np.abs(v[:, 1]) < 10).all() and ((v[:, 2] > 15) & (v[:, 2] < 60)).all()
    assert len(np.unique(np.round(v[:, 0], 3))) > n // 2, "cells should differ (each has its own state)"


def test_emulate_modbus_tcp(emulate):
    e = emulate("modbus", "--tcp", "127.0.0.1:0", "--devices", "1,2", "--seed", "3")  # 0: any free port
    banner = e.wait_banner()
    assert "2 x bms16 (16 cells each)" in banner
    port = int(banner.split(" on tcp 127.0.0.1:")[1].split(",")[0])  # the port it got, from the banner
    assert port > 0
    cfg = ModbusConfig.model_validate(
        {
            "type": "modbus",
            "poll_interval_s": 0.2,
            "devices": [
                {"name": f"m{i}", "profile": "bms16", "tcp": f"127.0.0.1:{port}", "device_id": i} for i in (1, 2)
            ],
        }
    )
    log = EventLog()
    _plausible(_read(ModbusDriver(cfg, DriverContext(emit=log)), 32), 32)
    assert not log.events
    assert e.stop() == 0


def test_emulate_serial_and_can_over_ptys(emulate, pty_pair):
    scpi, slcan = pty_pair("scpi"), pty_pair("slcan")
    s = emulate("serial", "--port", str(scpi.a), "--channels", "1,2,3")
    c = emulate("can", "--interface", "slcan", "--channel", str(slcan.a))
    assert "scpi_cycler" in s.wait_banner() and "bms16 (16 cells, bms16.dbc)" in c.wait_banner()
    scfg = SerialConfig.model_validate(
        {"type": "serial", "port": str(scpi.b), "profile": "scpi_cycler", "channels": [1, 2, 3], "poll_interval_s": 0.2}
    )
    _plausible(_read(SerialDriver(scfg, DriverContext(emit=EventLog())), 3), 3)
    ccfg = CanConfig.model_validate(
        {
            "type": "can",
            "interface": "slcan",
            "channel": str(slcan.b),
            "profile": "bms16",
            "bus_options": {"sleep_after_open": 0.05},
        }
    )
    _plausible(_read(CanDriver(ccfg, DriverContext(emit=EventLog())), 16), 16)
    assert s.stop() == 0 and c.stop() == 0


def test_emulate_modbus_refuses_a_non_loopback_address_by_default():
    out = subprocess.run(
        [sys.executable, "-m", "agent", "emulate", "modbus", "--tcp", "0.0.0.0:5020"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "without --allow-remote" in out.stderr
