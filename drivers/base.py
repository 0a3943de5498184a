"""The driver contract: what every source of readings (simulator, Modbus, CAN, serial) hands the agent.

A driver produces *batches* of readings in columnar numpy form, never one Python object per sample. The agent owns
buffering, retry, storage and upload; a driver only opens its transport, reads, and reports faults. python-can's
``BusABC`` is the model: an abstract base beside the implementations, and a registry by name (``drivers.registry``).
"""

from __future__ import annotations

import abc
import enum
import time
from collections.abc import Callable, Collection
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

CONFIG_DIR: ContextVar[Path | None] = ContextVar("battery_twin_config_dir", default=None)
"""Directory of the config file being validated: drivers resolve relative paths in their config (profiles, DBC
files) against it, so a service finds them whatever its working directory. Set by the agent's config loader."""


def config_relative(path: str | Path) -> Path:
    """``path`` made absolute against the config file's directory (unchanged if absolute or no file is loading)."""
    p = Path(path).expanduser()
    base = CONFIG_DIR.get()
    return p if p.is_absolute() or base is None else base / p


class Flag(enum.IntFlag):
    """Per-reading quality bits (the ``flags`` column in the store and on the wire)."""

    VOLTAGE_MISSING = 1  # voltage_v is NaN / not measured in this sample
    CURRENT_MISSING = 2
    TEMPERATURE_MISSING = 4
    STALE = 8  # a value was not refreshed within its expected period; the number is the last one seen
    OUT_OF_RANGE = 16  # a value lies outside the configured plausible range (kept, not clipped)
    SENSOR_FAULT = 32  # the device itself reported a fault for this sample
    CLOCK_ADJUSTED = 64  # the timestamp went backwards and was raised to keep per-cell time monotonic


FIELDS: tuple[str, ...] = ("voltage_v", "current_a", "temperature_c")
"""Measured values every reading carries (NaN when a source does not measure one). Units are in the names;
current is positive when the cell charges (DESIGN.md)."""

MISSING_FLAG: dict[str, Flag] = {
    "voltage_v": Flag.VOLTAGE_MISSING,
    "current_a": Flag.CURRENT_MISSING,
    "temperature_c": Flag.TEMPERATURE_MISSING,
}


@dataclass(frozen=True, slots=True, eq=False)
class ReadingBatch:
    """A batch of readings, one row per (cell, sample), as parallel numpy arrays.

    ``cell`` indexes into ``cells`` (the driver's cell ids), so a batch carries no per-row strings.
    """

    cells: tuple[str, ...]
    cell: np.ndarray  # int32, index into ``cells``
    ts_ms: np.ndarray  # int64, UTC milliseconds since the Unix epoch
    voltage_v: np.ndarray  # float64
    current_a: np.ndarray  # float64, positive = charging
    temperature_c: np.ndarray  # float64
    flags: np.ndarray  # uint32, ``Flag`` bits
    origin: Origin | None = None  # where the rows came from in a file (cyclers): cycle/step numbers, ledger key

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    @classmethod
    def build(
        cls,
        cells: tuple[str, ...] | list[str],
        cell: Any,
        ts_ms: Any,
        voltage_v: Any = None,
        current_a: Any = None,
        temperature_c: Any = None,
        flags: Any = None,
    ) -> ReadingBatch:
        """Coerce arrays to the contract's dtypes; missing fields become NaN with their MISSING flag set."""
        cell_arr = np.asarray(cell, dtype=np.int32).reshape(-1)
        n = cell_arr.shape[0]
        ts = np.broadcast_to(np.asarray(ts_ms, dtype=np.int64), (n,)).copy()
        fl = np.zeros(n, dtype=np.uint32) if flags is None else np.asarray(flags, dtype=np.uint32).reshape(-1).copy()
        values = {}
        for name, raw in (("voltage_v", voltage_v), ("current_a", current_a), ("temperature_c", temperature_c)):
            arr = np.full(n, np.nan) if raw is None else np.asarray(raw, dtype=np.float64).reshape(-1).copy()
            if arr.shape[0] != n:
                raise ValueError(f"{name} has {arr.shape[0]} rows, cell has {n}")
            fl[~np.isfinite(arr)] |= np.uint32(MISSING_FLAG[name])
            values[name] = arr
        if n and (cell_arr.min() < 0 or cell_arr.max() >= len(cells)):
            raise ValueError("cell index outside the batch's cell table")
        return cls(tuple(cells), cell_arr, ts, values["voltage_v"], values["current_a"], values["temperature_c"], fl)

    @classmethod
    def empty(cls, cells: tuple[str, ...] = ()) -> ReadingBatch:
        return cls.build(cells, np.zeros(0, np.int32), np.zeros(0, np.int64))

    @classmethod
    def concat(cls, batches: list[ReadingBatch]) -> ReadingBatch:
        """Join batches that may have different cell tables (cell indices are remapped); origins are not kept."""
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls.empty()
        table: dict[str, int] = {}
        parts = []
        for b in batches:
            lut = np.array([table.setdefault(c, len(table)) for c in b.cells], dtype=np.int32)
            parts.append(lut[b.cell])
        cells = tuple(table)
        return cls(
            cells,
            np.concatenate(parts),
            np.concatenate([b.ts_ms for b in batches]),
            np.concatenate([b.voltage_v for b in batches]),
            np.concatenate([b.current_a for b in batches]),
            np.concatenate([b.temperature_c for b in batches]),
            np.concatenate([b.flags for b in batches]),
        )

    def select(self, mask: np.ndarray) -> ReadingBatch:
        return ReadingBatch(
            self.cells,
            self.cell[mask],
            self.ts_ms[mask],
            self.voltage_v[mask],
            self.current_a[mask],
            self.temperature_c[mask],
            self.flags[mask],
            None if self.origin is None else self.origin.select(mask),
        )


@dataclass(frozen=True, slots=True, eq=False)
class Origin:
    """Rows read from a cycler's file: the cycler's own cycle and step numbers, and the ledger key.

    ``key`` names the test (cell and a hash of the file's head, so a file followed live and imported later is the
    same test); ``row`` numbers the file's data rows from 0. The store keeps, per key, the highest row committed
    and drops rows at or below it in the same transaction: a file read twice adds nothing."""

    key: str
    row: np.ndarray  # int64, data row number in the file, increasing
    cycle_no: np.ndarray  # int32, the cycler's cycle number (-1 when the file has none)
    step_no: np.ndarray  # int32, the cycler's step number (-1 when the file has none)

    def select(self, mask: np.ndarray) -> Origin:
        return Origin(self.key, self.row[mask], self.cycle_no[mask], self.step_no[mask])


@dataclass(slots=True)
class Event:
    """Something a person may need to know: a driver fault, an alarm, a quarantined store. Low rate by nature."""

    kind: str  # dotted, e.g. "driver.fault", "alarm.over_temperature", "store.quarantined"
    message: str
    level: str = "warning"  # "info" | "warning" | "alarm" | "critical"
    source: str = "agent"  # driver name, "store", "uplink", "twin", ...
    cell: str | None = None
    ts_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    data: dict[str, Any] = field(default_factory=dict)


LEVELS = ("info", "warning", "alarm", "critical")


@dataclass(frozen=True, slots=True)
class Check:
    """One line of ``battery-twin doctor``: what was checked, the verdict, and what to do about it."""

    name: str  # dotted, e.g. "driver.bms.port"
    status: str  # "ok" | "warn" | "fail"
    detail: str
    fix: str = ""


class DriverError(Exception):
    """A fault the driver cannot ride out by itself; the supervisor restarts the driver with backoff."""


class DriverConfig(BaseModel):
    """Fields every driver section of the config has; each driver subclasses this with its own options."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="driver name in the registry, e.g. 'simulator', 'modbus', 'can', 'serial'")
    name: str = Field(default="", description="unique name of this driver instance (defaults to the type)")
    enabled: bool = True


@dataclass
class DriverContext:
    """What the agent lends a driver: an event sink, a clock, and a logger name. Nothing else of the agent."""

    emit: Callable[[Event], None]
    clock_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    logger_name: str = "drivers"
    # cells the store already holds completed cycles of (a simulated past is made once per store, not per start)
    stored_cells: Callable[[], Collection[str]] = field(default=lambda: ())


class Driver(abc.ABC):
    """Base class of all drivers. Subclasses set ``config_model`` and implement ``open``, ``read``, ``close``.

    Lifecycle, owned by the agent's supervisor: ``await open()`` once, then ``await read()`` in a loop, then
    ``await close()``. If ``open`` or ``read`` raises, the supervisor reports an event, calls ``close``, waits with
    exponential backoff and makes a *new* instance. ``read`` waits until the next batch is due and returns it (an
    empty batch is fine); it must not buffer without bound. Blocking I/O belongs in ``asyncio.to_thread``.
    """

    config_model: ClassVar[type[DriverConfig]] = DriverConfig

    def __init__(self, config: DriverConfig, ctx: DriverContext):
        self.config = config
        self.ctx = ctx
        self.name = config.name or config.type

    @property
    @abc.abstractmethod
    def cells(self) -> tuple[str, ...]:
        """Cell ids this driver reports, known after construction (from config) so the agent can check that
        cell ids are unique within the rig."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Open the transport. Raise DriverError (or any exception) to be retried with backoff."""

    @abc.abstractmethod
    async def read(self) -> ReadingBatch:
        """Wait for and return the next batch of readings."""

    async def close(self) -> None:
        """Release the transport. Must not raise."""

    @classmethod
    def doctor(cls, config: DriverConfig) -> list[Check] | None:
        """Optional: is this driver's device reachable? For ``battery-twin doctor``; must not read data or change
        the device's state. Blocking I/O is fine (doctor runs it in a thread with a time limit). ``None`` (the
        default) lets doctor probe the generic fields instead: a ``/dev/...`` path (serial port), ``channel`` with
        ``interface`` (CAN), ``host`` with ``port`` (Modbus TCP)."""
        return None

    def status(self) -> dict[str, Any]:
        """Driver-specific health for the health message and dashboard (devices up/down, error counts)."""
        return {}

    def emit(self, kind: str, message: str, level: str = "warning", cell: str | None = None, **data: Any) -> None:
        self.ctx.emit(
            Event(
                kind=kind,
                message=message,
                level=level,
                source=self.name,
                cell=cell,
                ts_ms=self.ctx.clock_ms(),
                data=data,
            )
        )
