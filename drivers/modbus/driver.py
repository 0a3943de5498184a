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

from drivers.base import Driver, DriverContext, DriverError, ReadingBatch
from drivers.modbus.config import ModbusConfig, ModbusDevice
from drivers.modbus.regmap import RegisterMap
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
        self.polls = 0
        self.requests = 0


class ModbusDriver(Driver):
    config_model = ModbusConfig

    def __init__(self, config: ModbusConfig, ctx: DriverContext):
        super().__init__(config, ctx)
        self._cells = tuple(c for d in config.devices for c in d._cell_ids)
        self._devices: list[_Device] = []
        self._lines: dict[str, _Line] = {}
        self._tasks: list[asyncio.Task] = []
        self._pending: collections.deque[ReadingBatch] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._dropped_batches = 0
        self._broken: BaseException | None = None
        self._closing = False

    @property
    def cells(self) -> tuple[str, ...]:
        return self._cells

    async def open(self) -> None:
        _quiet_pymodbus()
        cfg: ModbusConfig = self.config  # type: ignore[assignment]
        self._wake = asyncio.Event()
        now = self.ctx.clock_ms()
        for dcfg in cfg.devices:
            line = self._lines.get(dcfg.line)
            if line is None:
                timeout = max((d.timeout_s or cfg.timeout_s) for d in cfg.devices if d.line == dcfg.line)
                line = self._lines[dcfg.line] = _Line(dcfg, timeout)
            self._devices.append(_Device(dcfg, self, line, now))
        for dev in self._devices:
            task = asyncio.create_task(self._run_device(dev), name=f"modbus:{self.name}:{dev.cfg.name}")
            task.add_done_callback(self._task_done)
            self._tasks.append(task)

    def _task_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None and self._broken is None:
            self._broken = task.exception()
            if self._wake is not None:
                self._wake.set()

    async def _run_device(self, dev: _Device) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            started = loop.time()
            await self._poll(dev)
            delay = dev.health.retry_delay_s(dev.interval_s)
            await asyncio.sleep(max(0.0, started + delay - loop.time()))

    async def _poll(self, dev: _Device) -> None:
        cfg: ModbusConfig = self.config  # type: ignore[assignment]
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
        self, dev: _Device, block, regs: np.ndarray, base: int, attempts: int
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
                kind, msg = (
                    "timeout",
                    (
                        f"no valid answer to a read of {block.count} registers at {block.address} "
                        f"within {dev.line.timeout_s:g} s (silent, or a "
                        "corrupt/truncated frame)"
                    ),
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
        cfg: ModbusConfig = self.config  # type: ignore[assignment]
        if len(self._pending) >= cfg.max_pending_batches:
            self._pending.popleft()
            self._dropped_batches += 1
            if self._dropped_batches == 1 or self._dropped_batches % 1000 == 0:
                self.emit(
                    "driver.overflow",
                    f"{self._dropped_batches} polls dropped: the agent is not keeping up "
                    f"(more than {cfg.max_pending_batches} waiting)",
                    level="alarm",
                    count=self._dropped_batches,
                )
        self._pending.append(batch)
        assert self._wake is not None
        self._wake.set()

    async def read(self) -> ReadingBatch:
        assert self._wake is not None, "open() first"
        if not self._pending and self._broken is None:
            self._wake.clear()
            try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                async with asyncio.timeout(0.5):
                    await self._wake.wait()
            except TimeoutError:
                pass
        if self._broken is not None:
            raise DriverError(f"a polling task died: {self._broken!r}") from self._broken
        now = self.ctx.clock_ms()
        for dev in self._devices:
            dev.health.check(now)
        if not self._pending:
            return ReadingBatch.empty(self._cells)
        batches = list(self._pending)
        self._pending.clear()
        return batches[0] if len(batches) == 1 else ReadingBatch.concat(batches)

    async def close(self) -> None:
        self._closing = True
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=1.0)
            for line in self._lines.values():  # fails whatever request a task still waits on
                line.close()
            if pending:  # a cancellation lost inside the client (asyncio.wait_for on Python 3.11 can drop one)
                for t in pending:
                    t.cancel()
                await asyncio.wait(pending, timeout=2.0)
        self._tasks.clear()
        for line in self._lines.values():
            line.close()
        self._lines.clear()

    def status(self) -> dict[str, Any]:
        now = self.ctx.clock_ms()
        return {
            "devices": {
                d.cfg.name: {**d.health.status(now), "polls": d.polls, "requests": d.requests} for d in self._devices
            },
            "dropped_batches": self._dropped_batches,
        }
