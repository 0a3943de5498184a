"""A simulated rig served as Modbus devices (pymodbus server, TCP or RTU), laid out by a driver profile.

Device ``device_ids[k]`` serves rig cells ``k*P .. k*P+P-1`` (P = the profile's cells) with the registers the
profile describes, so the ``modbus`` driver reading the same profile sees the rig. Values are encoded with
pymodbus's own ``convert_to_registers`` (plus a byte swap for "BADC" devices), independently of the driver's
numpy decoder, so the two check each other.

Fault modes, per device id (``faults[id] = mode``): ``silent`` (no answer), ``exception`` (device failure
exception; ``exception_input`` / ``exception_holding`` for one function only), ``truncate`` (answer cut short),
``corrupt`` (a broken frame: bad CRC on RTU, a bad function code on TCP). A device id the rig does not have gets
"gateway target failed to respond" on TCP and silence on RTU, as real gateways and lines do. Out-of-range values
come from ``RigFeed.set_override``; fault bits from ``cell_faults``.
"""

from __future__ import annotations

import collections
import functools
import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pymodbus import FramerType
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.emulator import Emulator, RigFeed
from drivers.modbus.profile import FUNCTION_CODES, TYPES, ModbusProfile, load_profile
from drivers.profiles import FIELD_INDEX, unit_conversion

log = logging.getLogger("drivers.modbus.emulator")

DT = ModbusClientMixin.DATATYPE
PYMODBUS_TYPES = {
    "u16": DT.UINT16,
    "i16": DT.INT16,
    "u32": DT.UINT32,
    "i32": DT.INT32,
    "f32": DT.FLOAT32,
    "f64": DT.FLOAT64,
}
INT_RANGE = {"u16": (0, 2**16 - 1), "i16": (-(2**15), 2**15 - 1), "u32": (0, 2**32 - 1), "i32": (-(2**31), 2**31 - 1)}
MODES = ("silent", "exception", "exception_input", "exception_holding", "truncate", "corrupt")


def encode_value(value: float, typ: str, word_order: Literal["big", "little"], byte_order: str) -> list[int]:
    """One value as registers, the way a device of that type and order puts it on the wire."""
    if typ in INT_RANGE:
        lo, hi = INT_RANGE[typ]
        value = int(min(max(round(value), lo), hi)) if np.isfinite(value) else hi
    regs = ModbusClientMixin.convert_to_registers(value, PYMODBUS_TYPES[typ], word_order=word_order)
    if byte_order == "little":
        regs = [((r >> 8) | (r << 8)) & 0xFFFF for r in regs]
    return regs


@dataclass(frozen=True, slots=True)
class _Slot:
    """One value of the profile: where it lives and how a cell's field becomes its raw number."""

    fc: int
    address: int
    typ: str
    wo: Literal["big", "little"]
    bo: Literal["big", "little"]
    scale: float
    offset: float
    factor: float
    uoff: float
    field: str
    cells: list[int]
    bits: int


def _slots(profile: ModbusProfile) -> list[_Slot]:
    out = []
    for e in profile.registers:
        fc = FUNCTION_CODES[e.function or profile.function]
        wo, bo = e.word_order or profile.word_order, e.byte_order or profile.byte_order
        width = TYPES[e.type][1]
        allc = list(range(profile.cells))
        if e.field in ("fault", "fault_bitmap"):
            first = 0 if e.cell == "all" else e.cell - 1
            cells = allc if e.cell == "all" else list(range(first, first + e.count))
            out.append(_Slot(fc, e.address, e.type, wo, bo, 1, 0, 1, 0, e.field, cells, e.count))
            continue
        factor, uoff = unit_conversion(e.unit, e.field)
        for k in range(e.count):
            cells = allc if e.cell == "all" else [e.cell - 1 + k]
            out.append(
                _Slot(
                    fc,
                    e.address + k * (e.stride or width),
                    e.type,
                    wo,
                    bo,
                    e.scale,
                    e.offset,
                    factor,
                    uoff,
                    e.field,
                    cells,
                    0,
                )
            )
    return out


class ModbusEmulator(Emulator):
    def __init__(
        self,
        feed: RigFeed,
        profile: ModbusProfile | str,
        device_ids: list[int],
        *,
        tcp: tuple[str, int] | None = None,
        rtu: str | None = None,
        baudrate: int = 19200,
        parity: str = "N",
        stopbits: int = 1,
    ):
        if (tcp is None) == (rtu is None):
            raise ValueError("give exactly one of tcp=(host, port) or rtu=PORT")
        super().__init__(feed)
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.per_device = self.profile.cells
        if len(device_ids) * self.per_device > feed.n:
            raise ValueError(
                f"{len(device_ids)} devices of {self.per_device} cells need "
                f"{len(device_ids) * self.per_device} rig cells, the rig has {feed.n}"
            )
        self.device_ids = list(device_ids)
        self.tcp, self.rtu = tcp, rtu
        self.baudrate, self.parity, self.stopbits = baudrate, parity, stopbits
        self.slots = _slots(self.profile)
        self.faults: dict[int, str] = {}
        self.cell_faults: set[int] = set()  # rig cell indices whose fault bit is set
        self.requests: collections.Counter[tuple[int, int, int, int]] = collections.Counter()  # (id, fc, addr, n)
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        # Register images per function code: start address and values, shaped like pymodbus's blocks.
        spans: dict[int, list[int]] = {3: [], 4: []}
        for s in self.slots:
            spans[s.fc].extend(range(s.address, s.address + TYPES[s.typ][1]))
        self.layout = {fc: sorted(set(a)) for fc, a in spans.items()}
        self.images = {
            (d, fc): np.zeros(max(a) - min(a) + 1 if a else 1, np.int64)
            for d in self.device_ids
            for fc, a in self.layout.items()
        }
        self._encode()

    # ------------------------------------------------------------------ values
    def _encode(self) -> None:
        _, values = self.feed.snapshot()
        for k, dev in enumerate(self.device_ids):
            base = k * self.per_device
            for s in self.slots:
                start = self.layout[s.fc][0]
                cells = [base + c for c in s.cells]
                if s.field in ("fault", "fault_bitmap"):
                    flags = [c in self.cell_faults for c in cells]
                    bits = sum(1 << i for i, f in enumerate(flags) if f)
                    raw: float = bits if s.field == "fault_bitmap" else int(any(flags))
                else:
                    v = float(np.mean(values[cells, FIELD_INDEX[s.field]]))
                    raw = ((v - s.uoff) / s.factor - s.offset) / s.scale
                regs = encode_value(raw, s.typ, s.wo, s.bo)
                img = self.images[(dev, s.fc)]
                img[s.address - start : s.address - start + len(regs)] = regs

    def cell_view(self, values: np.ndarray) -> np.ndarray:
        """What a perfect reader gets per rig cell from ``values`` (pack-level slots serve the device mean)."""
        out = values.copy()
        for k in range(len(self.device_ids)):
            base = k * self.per_device
            for s in self.slots:
                if s.field in FIELD_INDEX and len(s.cells) > 1:
                    cells = [base + c for c in s.cells]
                    out[..., cells, FIELD_INDEX[s.field]] = values[..., cells, FIELD_INDEX[s.field]].mean(
                        axis=-1, keepdims=True
                    )
        return out

    def resolution(self, field: str) -> float:
        """Largest quantisation step of a field in this profile (in the field's unit)."""
        steps = [abs(s.scale * s.factor) if s.typ in INT_RANGE else 1e-6 for s in self.slots if s.field == field]
        return max(steps, default=0.0)

    # ------------------------------------------------------------------ pymodbus hooks
    async def _action(
        self, dev: int, fc: int, start: int, address: int, count: int, regs: list[int], values: Any
    ) -> ExcCodes | None:
        if dev not in self.device_ids:
            return ExcCodes.GATEWAY_NO_RESPONSE
        self.requests[(dev, fc, address, count)] += 1
        mode = self.faults.get(dev)
        if mode == "exception" or mode == f"exception_{'holding' if fc == 3 else 'input'}":
            return ExcCodes.DEVICE_FAILURE
        img = self.images[(dev, fc)]
        lo = address - self.layout[fc][0]
        regs[address - start : address - start + count] = img[lo : lo + count].tolist()
        return None

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending or not data:
            return data
        rtu = self.rtu is not None
        if len(data) < (2 if rtu else 8):
            return data
        dev = data[0] if rtu else data[6]
        mode = self.faults.get(dev)
        if mode == "silent" or (rtu and dev not in self.device_ids):
            return b""
        if mode == "truncate":
            return data[: max(1, len(data) // 2)]
        if mode == "corrupt":
            b = bytearray(data)
            pos = len(b) // 2 if rtu else 7  # RTU: a data byte (the CRC catches it); TCP: the function code
            b[pos] ^= 0x5A
            return bytes(b)
        return data

    def _devices(self) -> list[SimDevice]:
        def block(fc: int) -> list[SimData]:
            addrs = self.layout[fc]
            if not addrs:
                return [SimData(0, count=1, datatype=DataType.INVALID)]
            runs: list[SimData] = []
            first = prev = addrs[0]
            for a in [*addrs[1:], -1]:  # -1 ends the last run
                if a != prev + 1:
                    runs.append(SimData(first, count=prev - first + 1, datatype=DataType.REGISTERS))
                    first = a
                prev = a
            return runs

        def bits() -> list[SimData]:
            return [SimData(0, values=[False] * 16, datatype=DataType.BITS)]

        return [
            SimDevice(dev, simdata=(bits(), bits(), block(3), block(4)), action=functools.partial(self._action, dev))
            for dev in [*self.device_ids, 0]
        ]  # 0: every other id (answered as "no such device")

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Serve; a TCP port of 0 binds a free port, kept for later restarts (``tcp`` then holds the real one)."""
        if logging.getLogger("pymodbus").level == logging.NOTSET:
            logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        if self.tcp is not None:
            self.server = ModbusTcpServer(self._devices(), address=self.tcp, trace_packet=self._trace_packet)
        else:
            assert self.rtu is not None
            self.server = ModbusSerialServer(
                self._devices(),
                port=self.rtu,
                framer=FramerType.RTU,
                trace_packet=self._trace_packet,
                baudrate=self.baudrate,
                parity=self.parity,
                stopbits=self.stopbits,
            )
        await self.server.serve_forever(background=True)
        if self.tcp is not None and self.tcp[1] == 0:
            sockets: Any = getattr(self.server.transport, "sockets", None) or ()
            self.tcp = (self.tcp[0], int(sockets[0].getsockname()[1]))

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated

    async def on_tick(self) -> None:
        self._encode()
