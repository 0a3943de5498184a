"""Freshness of values and up/down state of devices, shared by the field drivers.

``Freshness`` keeps, per (cell, field), the last value a device sent and when. A snapshot reports a value as
fresh while it is younger than its expected period (``stale_after_ms``), as the last value seen with
``Flag.STALE`` until the device counts as down (``expire_after_ms``), and after that not at all (NaN), so a
silent device never looks alive in the store.

``DeviceHealth`` turns successes and failures into events: one ``driver.device_fault`` when a kind of fault
starts (not one per retry), ``driver.device_down`` once a device has been silent for ``down_after_ms``, and
``driver.device_up`` when it answers again. It also spaces the retries of a failing device with the project's
one ``Backoff`` (``drivers.backoff``), so a dead device costs its neighbours on a shared line as little as possible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from drivers.backoff import Backoff
from drivers.base import FIELDS, Flag, ReadingBatch

NEVER = np.iinfo(np.int64).min // 4
FAULT_EVENT_GAP_MS = 10_000


class Freshness:
    """Last value and refresh time per (cell, field), as (n_cells, 3) arrays; not thread-safe by itself."""

    def __init__(self, n_cells: int, stale_after_ms: Any, expire_after_ms: float):
        self.n = n_cells
        self.value = np.full((n_cells, len(FIELDS)), np.nan)
        self.at_ms = np.full((n_cells, len(FIELDS)), NEVER, dtype=np.int64)
        self.fault = np.zeros((n_cells, len(FIELDS)), dtype=bool)  # the device said the value is not valid
        self.cell_fault = np.zeros(n_cells, dtype=bool)  # the device flags the cell itself (fault bits)
        self.cell_fault_at_ms = np.full(n_cells, NEVER, dtype=np.int64)
        self.stale_after_ms = np.broadcast_to(
            np.asarray(stale_after_ms, dtype=np.float64), (n_cells, len(FIELDS))
        ).copy()
        self.expire_after_ms = float(expire_after_ms)

    def update(self, mask: np.ndarray, values: np.ndarray, faults: np.ndarray | None, ts_ms: int) -> None:
        """Refresh the (cell, field) entries where ``mask`` is true with ``values`` (both shaped (n, 3))."""
        self.value[mask] = values[mask]
        self.at_ms[mask] = ts_ms
        self.fault[mask] = False if faults is None else faults[mask]

    def update_points(self, cells: np.ndarray, fields: np.ndarray, values: np.ndarray, ts_ms: int) -> None:
        """Refresh scattered entries (used by frame-based drivers): later points win."""
        cells, fields, values = np.asarray(cells), np.asarray(fields), np.asarray(values, dtype=np.float64)
        if cells.shape[0] > 1:  # numpy does not promise which of repeated indices an assignment keeps
            flat = cells * len(FIELDS) + fields
            _, first_from_end = np.unique(flat[::-1], return_index=True)
            keep = flat.shape[0] - 1 - first_from_end
            cells, fields, values = cells[keep], fields[keep], values[keep]
        self.value[cells, fields] = values
        self.at_ms[cells, fields] = ts_ms
        self.fault[cells, fields] = ~np.isfinite(values)

    def set_cell_faults(self, cells: np.ndarray, faulty: np.ndarray, ts_ms: int) -> None:
        self.cell_fault[cells] = faulty
        self.cell_fault_at_ms[cells] = ts_ms

    def snapshot(self, now_ms: int, cells: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cell index, values (k, 3), flags) for the given cells (default all) that have any unexpired value."""
        idx = np.arange(self.n, dtype=np.int32) if cells is None else np.asarray(cells, dtype=np.int32)
        age = now_ms - self.at_ms[idx]
        alive = age <= self.expire_after_ms
        vals = np.where(alive, self.value[idx], np.nan)
        stale = alive & (age > self.stale_after_ms[idx])
        fault = (self.fault[idx] & alive).any(axis=1)
        fault |= self.cell_fault[idx] & (now_ms - self.cell_fault_at_ms[idx] <= self.expire_after_ms)
        flags = np.where(stale.any(axis=1), np.uint32(Flag.STALE), np.uint32(0))
        flags |= np.where(fault, np.uint32(Flag.SENSOR_FAULT), np.uint32(0))
        keep = alive.any(axis=1)
        return idx[keep], vals[keep], flags[keep].astype(np.uint32)

    def batch(self, cell_table: tuple[str, ...], now_ms: int, cells: np.ndarray | None = None) -> ReadingBatch:
        idx, vals, flags = self.snapshot(now_ms, cells)
        return ReadingBatch.build(cell_table, idx, now_ms, vals[:, 0], vals[:, 1], vals[:, 2], flags)


Emit = Callable[..., None]  # Driver.emit(kind, message, level=..., cell=..., **data)


class DeviceHealth:
    """Up/down state, fault streaks and retry spacing of one device (a Modbus unit, a CAN node, an instrument)."""

    def __init__(
        self,
        name: str,
        emit: Emit,
        down_after_ms: float,
        now_ms: int,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 30.0,
    ):
        self.name = name
        self.emit = emit
        self.down_after_ms = down_after_ms
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._backoff = Backoff(initial_s=retry_initial_s, max_s=max(retry_max_s, retry_initial_s))
        self._retry_s = 0.0  # the backoff's delay after the latest failure
        self.state = "unknown"  # "up" once it answered, "down" once silent for down_after_ms
        self.since_ms = now_ms  # start of the current state (or of the silence, while unknown)
        self.last_ok_ms: int | None = None
        self.failures = 0  # consecutive failed attempts
        self.errors: dict[str, int] = {}  # total errors by kind
        self.active_faults: set[str] = set()
        self.last_error: str | None = None
        self.last_error_ms: int | None = None
        self._fault_emitted_ms: dict[str, int] = {}  # a flapping device raises one fault event per kind per 10 s

    def report(self, now_ms: int, alive: bool, faults: dict[str, str] | None = None) -> None:
        """One attempt's outcome: ``alive`` if the device answered at all; ``faults`` kind -> message.

        A fault event is raised when a kind of fault starts (and at most once per kind per 10 s for a flapping
        device), a down event once the device has been silent for ``down_after_ms``, an up event when it
        answers again.
        """
        faults = faults or {}
        if alive:
            if self.state == "down":
                self.emit(
                    "driver.device_up",
                    f"device {self.name} answers again after {(now_ms - self.since_ms) / 1000:.1f} s down",
                    level="info",
                    device=self.name,
                    down_s=round((now_ms - self.since_ms) / 1000, 3),
                )
            if self.state != "up":
                self.state, self.since_ms = "up", now_ms
            self.last_ok_ms = now_ms
            self.failures = 0
            self._backoff.reset()
        else:
            self.failures += 1
            self._retry_s = self._backoff.next_delay()
        for kind, message in faults.items():
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self.last_error, self.last_error_ms = message[:300], now_ms
            if (
                kind not in self.active_faults
                and now_ms - self._fault_emitted_ms.get(kind, NEVER) >= FAULT_EVENT_GAP_MS
            ):
                self._fault_emitted_ms[kind] = now_ms
                self.emit(
                    "driver.device_fault",
                    f"device {self.name}: {message}"[:1000],
                    level="warning",
                    device=self.name,
                    fault=kind,
                )
        self.active_faults = set(faults)
        if not alive:
            self.check(now_ms)

    def ok(self, now_ms: int) -> None:
        self.report(now_ms, True)

    def check(self, now_ms: int) -> None:
        """Declare the device down once it has been silent for ``down_after_ms`` (also for passive sources)."""
        if self.state == "down":
            return
        silent_since = self.last_ok_ms if self.last_ok_ms is not None else self.since_ms
        if now_ms - silent_since >= self.down_after_ms:
            self.state, self.since_ms = "down", silent_since
            recent = self.last_error_ms is not None and self.last_error_ms >= silent_since
            why = f" ({self.last_error})" if recent else ""
            self.emit(
                "driver.device_down",
                f"device {self.name} gave no data for {(now_ms - silent_since) / 1000:.1f} s{why}",
                level="alarm",
                device=self.name,
                last_error=self.last_error,
            )

    def retry_delay_s(self, base_s: float) -> float:
        """Delay before the next attempt: ``base_s`` while healthy, then doubling (from ``max(base_s,
        retry_initial_s)``) up to ``max(retry_max_s, base_s)``."""
        if self.failures == 0:
            return base_s
        return max(self._retry_s, base_s)

    def status(self, now_ms: int) -> dict[str, Any]:
        return {
            "state": self.state,
            "errors": dict(self.errors),
            "last_error": self.last_error,
            "last_ok_age_s": None if self.last_ok_ms is None else round((now_ms - self.last_ok_ms) / 1000, 1),
        }
