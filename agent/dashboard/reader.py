"""Read-only view of the agent's SQLite store for the dashboard, on its own connection and its own thread.

The store runs in WAL mode, so a second, read-only connection sees every committed transaction without ever
taking the writer's lock or queueing behind the store's writer thread: the dashboard cannot slow ingest down.
Every method here is blocking and runs on ``StoreReader.call`` (one dedicated thread), never on the event loop.
Queries are bounded: by seq ranges (readings' primary key), by ``LIMIT``, or by the ``cycles_cell`` index.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from agent.store.db import readonly_uri
from agent.store.stats import StoreStats, store_stats

T = TypeVar("T")

EVENT_COLS = "seq, ts_ms, kind, level, source, cell, message, data"
# The fields of a cycles.v1 payload the views use; the forecast lists (FORECAST_LISTS) only for the newest cycle.
CYCLE_FIELDS = (
    "discharge_ah",
    "soh",
    "temperature_mean_c",
    "temperature_max_c",
    "predicted_eol_cycle",
    "predicted_eol_cycle_lower",
    "predicted_eol_cycle_upper",
    "predicted_cycle_life",
    "model_version",
)
FORECAST_LISTS = ("predicted_capacity_ah", "predicted_capacity_lower_ah", "predicted_capacity_upper_ah")
CYCLE_SELECT = (
    "SELECT seq, ts_ms, cell, cycle, "
    + ", ".join(f"json_extract(payload, '$.{f}')" for f in CYCLE_FIELDS + FORECAST_LISTS)
    + " FROM cycles"
)


@dataclass(slots=True)
class Readings:
    """Columnar readings as read back (``cell`` is the store's cell index)."""

    seq: np.ndarray
    ts_ms: np.ndarray
    cell: np.ndarray
    voltage_v: np.ndarray
    current_a: np.ndarray
    temperature_c: np.ndarray

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    @classmethod
    def from_rows(cls, rows: list[tuple[Any, ...]]) -> Readings:
        if not rows:
            z = np.zeros(0, np.int64)
            return cls(z, z, z, np.zeros(0), np.zeros(0), np.zeros(0))
        a = np.array(rows, dtype=np.float64)  # NULL -> NaN; seq/ts are exact below 2**53
        return cls(
            a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2].astype(np.int64), a[:, 3], a[:, 4], a[:, 5]
        )

    def take(self, mask_or_index: np.ndarray) -> Readings:
        return Readings(*(getattr(self, f)[mask_or_index] for f in self.__slots__))


def _cycle_row(r: tuple[Any, ...]) -> dict[str, Any]:
    d: dict[str, Any] = {"seq": r[0], "ts": r[1], "cell": r[2], "cycle": r[3]}
    for k, f in enumerate(CYCLE_FIELDS):
        d[f] = r[4 + k]
    for k, f in enumerate(FORECAST_LISTS):
        d[f] = r[4 + len(CYCLE_FIELDS) + k]  # JSON text or None; decoded by the caller if needed
    return d


class StoreReader:
    """One read-only connection to the store file, reopened if the file is replaced (store quarantine)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-db")
        self._conn: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self.generation = 0  # +1 each time the store file was replaced (seqs may start again)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._pool.submit(_close).result()
        self._pool.shutdown(wait=True)

    # ------------------------------------------------------------------ connection
    @property
    def conn(self) -> sqlite3.Connection:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._conn is not None:  # mid-quarantine: the new file is not there yet
                return self._conn
            raise
        inode = (st.st_dev, st.st_ino)
        if self._conn is None or inode != self._inode:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self.generation += 1
            conn = sqlite3.connect(readonly_uri(self.path), uri=True, check_same_thread=False, timeout=5.0)
            conn.execute("PRAGMA query_only=1")
            self._conn, self._inode = conn, inode
        return self._conn

    # ------------------------------------------------------------------ cursors and cells
    def max_seqs(self) -> dict[str, int]:
        c = self.conn
        return {
            s: c.execute(f"SELECT coalesce(max(seq), 0) FROM {s}").fetchone()[0]
            for s in ("readings", "events", "cycles")
        }

    def cells(self) -> dict[int, str]:
        return dict(self.conn.execute("SELECT idx, id FROM cells ORDER BY idx"))

    def seq_at(self, ts_ms: int) -> int:
        """The last seq *before* the first reading at or after ``ts_ms`` (bisection on the primary key).

        Readings are appended in time order per driver, so ts grows with seq up to the jitter between drivers;
        a seek per step keeps this O(log n) on a store of any size (there is no index on ts_ms)."""
        c = self.conn
        lo, hi = c.execute("SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM readings").fetchone()
        if hi == 0:
            return 0
        hi += 1  # "none at or after ts_ms": everything is before
        while lo < hi:
            mid = (lo + hi) // 2
            row = c.execute("SELECT seq, ts_ms FROM readings WHERE seq >= ? ORDER BY seq LIMIT 1", (mid,)).fetchone()
            if row is None or row[1] >= ts_ms:
                hi = mid
            else:
                lo = row[0] + 1
        return int(lo) - 1

    # ------------------------------------------------------------------ readings
    def readings_after(self, after_seq: int, limit: int) -> Readings:
        rows = self.conn.execute(
            "SELECT seq, ts_ms, cell, voltage_v, current_a, temperature_c FROM readings WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return Readings.from_rows(rows)

    def readings_for_cells(self, cells: list[int], after_seq: int, upto_seq: int, max_per_cell: int) -> Readings:
        """Readings of some cells in (after_seq, upto_seq], thinned inside SQLite to at most ``max_per_cell`` points
        per cell: the range is cut into ``max_per_cell`` equal seq buckets and each cell keeps its newest reading of
        each bucket (so its newest reading always, and every reading when the range is no longer than the cap).

        Only the points kept cross into Python: an hour of 16 cells at 10 Hz is 576,000 readings in the window but
        at most 16 x 3,600 rows are fetched (bench/dashboard_backfill.py). One pass over the range by primary key;
        each bucket is grouped on its own (a few hundred rows), never the whole window at once."""
        if not cells or upto_seq <= after_seq:
            return Readings.from_rows([])
        c = self.conn
        lo, hi = c.execute("SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM readings").fetchone()
        after, upto = max(after_seq, lo - 1), min(upto_seq, hi)
        if upto <= after:
            return Readings.from_rows([])
        width = -(-(upto - after) // max_per_cell)
        marks = ",".join("?" * len(cells))
        rows = c.execute(
            "WITH RECURSIVE b(lo) AS (SELECT ? UNION ALL SELECT lo + ? FROM b WHERE lo + ? < ?) "
            "SELECT r.seq, r.ts_ms, r.cell, r.voltage_v, r.current_a, r.temperature_c FROM b "
            "JOIN readings AS r ON r.seq IN (SELECT max(seq) FROM readings "
            f"  WHERE seq > b.lo AND seq <= min(b.lo + ?, ?) AND cell IN ({marks}) GROUP BY cell) "
            "ORDER BY r.seq",
            (after, width, width, upto, width, upto, *cells),
        ).fetchall()
        return Readings.from_rows(rows)

    # ------------------------------------------------------------------ events
    def events_after(self, after_seq: int, limit: int = 500) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            f"SELECT {EVENT_COLS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        ).fetchall()
        return [_event(r) for r in rows]

    def recent_events(self, limit: int) -> list[dict[str, Any]]:
        rows = self.conn.execute(f"SELECT {EVENT_COLS} FROM events ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [_event(r) for r in reversed(rows)]

    def alarm_events(self, since_ts_ms: int, scan: int = 5000) -> list[dict[str, Any]]:
        """Alarm/critical events since a time, among the newest ``scan`` events (bounded: no index on ts)."""
        rows = self.conn.execute(
            f"SELECT {EVENT_COLS} FROM events WHERE seq > (SELECT coalesce(max(seq), 0) - ? FROM events) "
            "AND ts_ms >= ? ORDER BY seq",
            (scan, since_ts_ms),
        ).fetchall()
        return [_event(r) for r in rows]

    # ------------------------------------------------------------------ cycles
    def cycles_after(self, after_seq: int, limit: int = 2000) -> list[dict[str, Any]]:
        rows = self.conn.execute(CYCLE_SELECT + " WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)).fetchall()
        return [_cycle_row(r) for r in rows]

    def cycles_for_cells(self, cells: list[str], per_cell: int, upto_seq: int) -> list[dict[str, Any]]:
        """The newest ``per_cell`` cycles of each cell (by the cycles_cell index), oldest first."""
        out: list[dict[str, Any]] = []
        for cell in cells:
            rows = self.conn.execute(
                CYCLE_SELECT + " WHERE cell = ? AND seq <= ? ORDER BY cycle DESC LIMIT ?", (cell, upto_seq, per_cell)
            ).fetchall()
            out.extend(_cycle_row(r) for r in reversed(rows))
        return out

    # ------------------------------------------------------------------ health
    def store_health(self) -> StoreStats:
        """The store's figures for health: the agent's own function, on this read-only connection."""
        return store_stats(self.conn, time.time_ns() // 1_000_000)


def _event(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "seq": r[0],
        "ts": r[1],
        "kind": r[2],
        "level": r[3],
        "source": r[4],
        "cell": r[5],
        "message": r[6],
        "data": r[7],
    }
