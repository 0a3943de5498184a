"""The ``modbus`` driver: polls devices over Modbus TCP or RTU (pymodbus async client) by their profiles.

Every device has its own polling task, so a device that does not answer delays nobody on TCP (each device has
its own connection). On an RS-485 line the devices share the wire, so a silent device costs its neighbours one
timeout per probe; once it fails, it is probed with exponential backoff (single attempts, no retries) instead of
at the poll rate. Faults are handled per device: reported as events, never raised; ``read`` only raises when
the driver itself is broken.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

import numpy as np
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.base import DriverContext, ReadingBatch
from drivers.modbus.config import ModbusConfig, ModbusDevice
from drivers.modbus.regmap import Block, RegisterMap
from drivers.pacing import Pacer
from drivers.sampling import SampledDriver
from drivers.stale import DeviceHealth, Freshness

log = logging.getLogger("drivers.modbus")

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


def _quiet_pymodbus() -> None:
    """pymodbus logs every timeout at ERROR; the driver reports them as events, once per fault streak."""
    lg = logging.getLogger("pymodbus")
    if lg.level == logging.NOTSET:
        lg.setLevel(logging.CRITICAL)


class _Line:
    """One pymodbus client: a TCP connection, or an RTU serial port shared by the devices on it."""

    def __init__(self, dev: ModbusDevice, timeout_s: float):
        self.timeout_s = timeout_s
        if dev.rtu:
            self.client: Any = AsyncModbusSerialClient(
                dev.rtu,
                framer=FramerType.RTU,
                baudrate=dev.baudrate,
                parity=dev.parity,
                stopbits=dev.stopbits,
                bytesize=8,
                timeout=timeout_s,
                retries=0,
                reconnect_delay=0,
            )
        else:
            self.client = AsyncModbusTcpClient(
                dev._host, port=dev._port, timeout=timeout_s, retries=0, reconnect_delay=0
            )
        self.connect_lock = asyncio.Lock()

    async def ensure_connected(self) -> bool:
        async with self.connect_lock:
            if self.client.connected:
                return True
            return bool(await self.client.connect())

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing must not raise
            pass


class _Device:
    def __init__(self, cfg: ModbusDevice, drv: ModbusDriver, line: _Line, now_ms: int):
        dcfg = drv.config
        self.cfg = cfg
        self.map = RegisterMap(cfg._profile)
        self.cells = cfg._cell_ids
        self.line = line
        self.interval_s = cfg.poll_interval_s or dcfg.poll_interval_s
        self.health = DeviceHealth(
            cfg.name,
            drv.emit,
            dcfg.down_after_s * 1000,
            now_ms,
            retry_initial_s=self.interval_s,
            retry_max_s=dcfg.backoff_max_s,
        )
        self.fresh = Freshness(
            len(self.cells), dcfg.stale_after_polls * self.interval_s * 1000, dcfg.down_after_s * 1000
        )
        self.pacer = Pacer(self.interval_s)
        self.polls = 0
        self.requests = 0


class ModbusDriver(SampledDriver):
    """Each device is polled by its own task (``_run_device``) into a bounded queue; a sample (``_sample``) takes
    whatever the polls left there, waking as soon as one lands (``_wait``)."""

    config_model = ModbusConfig
    config: ModbusConfig

    def __init__(self, config: ModbusConfig, ctx: DriverContext):
        super().__init__(config, ctx, None)
        self._cells = tuple(c for d in config.devices for c in d._cell_ids)
        self._devices: list[_Device] = []
        self._lines: dict[str, _Line] = {}
        self._pending: collections.deque[ReadingBatch] = collections.deque()
        self._dropped_batches = 0

    @property
    def cells(self) -> tuple[str, ...]:
        return self._cells

    async def _open_transport(self) -> None:
        _quiet_pymodbus()
        cfg = self.config
        now = self.ctx.clock_ms()
        for dcfg in cfg.devices:
            line = self._lines.get(dcfg.line)
            if line is None:
                timeout = max((d.timeout_s or cfg.timeout_s) for d in cfg.devices if d.line == dcfg.line)
                line = self._lines[dcfg.line] = _Line(dcfg, timeout)
            self._devices.append(_Device(dcfg, self, line, now))
        for dev in self._devices:
            self.start_task(self._run_device(dev), dev.cfg.name)

    def _close_transport(self) -> None:
        for line in self._lines.values():  # also fails whatever request a task still waits on
            line.close()

    def _failure_message(self, exc: BaseException) -> str:
        return f"a polling task died: {exc!r}"

    async def _run_device(self, dev: _Device) -> None:
        dev.pacer.start(first_in_s=0.0)
        # The stop flag, not only the cancellation, ends the loop: on Python 3.11 a cancellation can be lost
        # inside the client's asyncio.wait_for, and a loop that only ends on cancellation would then run forever.
        while not self.stopping:
            await dev.pacer.wait(dev.health.retry_delay_s(dev.interval_s))
            if not self.stopping:
                await self._poll(dev)

    async def _poll(self, dev: _Device) -> None:
        cfg = self.config
        rmap = dev.map
        regs = np.zeros(rmap.n_registers, dtype=np.uint16)
        ok = np.zeros(len(rmap.blocks), dtype=bool)
        faults: dict[str, str] = {}
        retries = dev.cfg.retries if dev.cfg.retries is not None else cfg.retries
        attempts = 1 + (retries if dev.health.failures == 0 else 0)
        dev.polls += 1
        try:
            if not await dev.line.ensure_connected():
                faults["unreachable"] = f"cannot connect to {dev.cfg.tcp or dev.cfg.rtu}"
            else:
                for b, block in enumerate(rmap.blocks):
                    kind, msg = await self._read_block(dev, block, regs, rmap.block_base[b], attempts)
                    if kind is None:
                        ok[b] = True
                        continue
                    faults.setdefault(kind, msg)
                    if kind in ("timeout", "unreachable", "exception_10", "exception_11"):
                        break  # the device is silent: do not spend more of the line's time on it
        except (TimeoutError, ModbusException, OSError) as exc:
            faults["io"] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            log.exception("device %s: unexpected error while polling", dev.cfg.name)
            faults["error"] = f"unexpected {exc!r}"[:300]
        now = self.ctx.clock_ms()
        alive = bool(ok.any())
        if alive:
            d = rmap.decode(regs, ok)
            dev.fresh.update(d.mask, d.values, d.faults, now)
            if d.cell_fault_mask.any():
                cells = np.flatnonzero(d.cell_fault_mask)
                dev.fresh.set_cell_faults(cells, d.cell_fault[cells], now)
            self._push(dev.fresh.batch(dev.cells, now))
        dev.health.report(now, alive, faults)

    async def _read_block(
        self, dev: _Device, block: Block, regs: np.ndarray, base: int, attempts: int
    ) -> tuple[str | None, str]:
        client = dev.line.client
        fn = client.read_holding_registers if block.function_code == 3 else client.read_input_registers
        kind, msg = "timeout", ""
        for _ in range(attempts):
            dev.requests += 1
            try:
                rr = await fn(block.address, count=block.count, device_id=dev.cfg.device_id)
            except ConnectionException as exc:
                return "unreachable", f"connection lost: {exc}"
            except ModbusIOException:
                kind = "timeout"
                msg = (
                    f"no valid answer to a read of {block.count} registers at {block.address} within "
                    f"{dev.line.timeout_s:g} s (silent, or a corrupt/truncated frame)"
                )
                continue
            if rr.isError():
                code = int(getattr(rr, "exception_code", 0) or 0)
                return f"exception_{code}", (
                    f"Modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')}) "
                    f"reading {block.count} registers at {block.address} "
                    f"(function {block.function_code})"
                )
            values = getattr(rr, "registers", None) or []
            if len(values) < block.count:
                kind, msg = "short_response", f"asked for {block.count} registers at {block.address}, got {len(values)}"
                continue
            regs[base : base + block.count] = np.asarray(values[: block.count], dtype=np.int64) & 0xFFFF
            return None, ""
        return kind, msg

    def _push(self, batch: ReadingBatch) -> None:
        if not len(batch):
            return
        limit = self.config.max_pending_batches
        if len(self._pending) >= limit:
            self._pending.popleft()
            self._dropped_batches += 1
            if self._dropped_batches == 1 or self._dropped_batches % 1000 == 0:
                self.emit(
                    "driver.overflow",
                    f"{self._dropped_batches} polls dropped: the agent is not keeping up (more than {limit} waiting)",
                    level="alarm",
                    count=self._dropped_batches,
                )
        self._pending.append(batch)
        assert self._wake is not None
        self._wake.set()

    async def _wait(self) -> int:
        """Until a poll lands (or a task dies), at most 0.5 s, so device health is checked even when all is quiet."""
        assert self._wake is not None, "open() first"
        if not self._pending and self._failure is None:
            self._wake.clear()
            try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                async with asyncio.timeout(0.5):
                    await self._wake.wait()
            except TimeoutError:
                pass
        return 1

    async def _sample(self, now_ms: int, ticks: int) -> ReadingBatch:
        for dev in self._devices:
            dev.health.check(now_ms)
        if not self._pending:
            return ReadingBatch.empty(self._cells)
        batches = list(self._pending)
        self._pending.clear()
        return batches[0] if len(batches) == 1 else ReadingBatch.concat(batches)

    def status(self) -> dict[str, Any]:
        now = self.ctx.clock_ms()
        return {
            "devices": {
                d.cfg.name: {**d.health.status(now), "polls": d.polls, "requests": d.requests} for d in self._devices
            },
            "dropped_batches": self._dropped_batches,
        }
