"""The writer: a batch's readings, the events raised with it and the cycles it completed, in one transaction.

Each stream's ``seq`` comes from ``meta.next_seq.<stream>`` and advances inside the same transaction as the rows,
so a seq is never reused and a failed batch consumes none. ``last_seq`` (the highest committed seq per stream) is
updated only after COMMIT. Readings go in with one ``executemany`` per batch: no per-sample statement.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.faultpoints import faultpoint
from agent.store.db import Db
from drivers.base import Event, ReadingBatch

Cycle = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Appended:
    """What one transaction committed: the readings' (first, last) seq (0, 0 if none) and the cycles' seqs."""

    first: int = 0
    last: int = 0
    cycle_seqs: list[int] = field(default_factory=list)


class Writer:
    """Owns the cell table cache and the committed counters; lives on the store thread."""

    def __init__(self, db: Db, last_seq: dict[str, int]):
        self.db = db
        self.last_seq = dict(last_seq)
        self._cells: dict[str, int] = {cid: idx for idx, cid in db.conn.execute("SELECT idx, id FROM cells")}
        self.cell_ids: dict[int, str] = {v: k for k, v in self._cells.items()}

    def append(
        self,
        batch: ReadingBatch | None = None,
        source: str = "",
        events: Sequence[Event] = (),
        cycles: Sequence[Cycle] = (),
    ) -> Appended:
        conn = self.db.conn
        n = len(batch) if batch is not None else 0
        if not (n or events or cycles):
            return Appended()
        new_cells: list[str] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            first = last = 0
            if batch is not None and n:
                first, last = self._insert_readings(batch, source, new_cells)
            last_event = self._insert_events(events) if events else 0
            cycle_seqs = self._insert_cycles(cycles) if cycles else []
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._forget(new_cells)  # the rollback took their rows: their indices may be handed out again
            raise
        if last:
            self.last_seq["readings"] = last
        if last_event:
            self.last_seq["events"] = last_event
        if cycle_seqs:
            self.last_seq["cycles"] = cycle_seqs[-1]
        faultpoint("store.after_commit")
        return Appended(first, last, cycle_seqs)

    # ------------------------------------------------------------------ inside the transaction
    def _next_seq(self, stream: str, n: int) -> int:
        first = self.db.meta(f"next_seq.{stream}", 1)
        self.db.conn.execute("UPDATE meta SET value=? WHERE key=?", (first + n, f"next_seq.{stream}"))
        return first

    def _cell_lut(self, cells: tuple[str, ...], source: str, new_cells: list[str]) -> np.ndarray:
        """Store indices for a batch's cell table; cells seen for the first time are inserted (and listed in
        ``new_cells``, so that a rollback can forget them)."""
        out = np.empty(len(cells), dtype=np.int64)
        for k, cid in enumerate(cells):
            idx = self._cells.get(cid)
            if idx is None:
                cur = self.db.conn.execute("INSERT INTO cells(id, source) VALUES (?, ?)", (cid, source))
                idx = int(cur.lastrowid or 0)
                self._cells[cid] = idx
                self.cell_ids[idx] = cid
                new_cells.append(cid)
            out[k] = idx
        return out

    def _forget(self, cells: Iterable[str]) -> None:
        for cid in cells:
            idx = self._cells.pop(cid, None)
            if idx is not None:
                self.cell_ids.pop(idx, None)

    def _insert_readings(self, batch: ReadingBatch, source: str, new_cells: list[str]) -> tuple[int, int]:
        if batch.origin is not None:
            return self._insert_from_file(batch, source, new_cells)
        first, columns = self._reading_columns(batch, source, new_cells)
        self.db.conn.executemany(
            "INSERT INTO readings(seq, ts_ms, cell, voltage_v, current_a, temperature_c, flags) VALUES (?,?,?,?,?,?,?)",
            zip(*columns),
        )
        return first, first + len(batch) - 1

    def _reading_columns(self, batch: ReadingBatch, source: str, new_cells: list[str]) -> tuple[int, list[list[Any]]]:
        """Seqs for the batch and its columns in the readings table's order (seq, ts_ms, cell, V, A, degC, flags)."""
        lut = self._cell_lut(batch.cells, source, new_cells)
        n = len(batch)
        first = self._next_seq("readings", n)
        columns = [batch.ts_ms, lut[batch.cell], batch.voltage_v, batch.current_a, batch.temperature_c, batch.flags]
        return first, [list(range(first, first + n)), *(c.tolist() for c in columns)]

    def _insert_from_file(self, batch: ReadingBatch, source: str, new_cells: list[str]) -> tuple[int, int]:
        """Rows of a cycler's file: only those past the ledger's last row for the test, with cycle/step numbers."""
        origin = batch.origin
        assert origin is not None
        conn = self.db.conn
        done = conn.execute("SELECT last_row, rows FROM import_ledger WHERE key=?", (origin.key,)).fetchone()
        if done is not None:
            keep = origin.row > int(done[0])
            if not keep.all():
                batch = batch.select(keep)
                origin = batch.origin
                assert origin is not None
        n = len(batch)
        if not n:
            return 0, 0
        first, columns = self._reading_columns(batch, source, new_cells)
        rows = zip(*columns, origin.cycle_no.tolist(), origin.step_no.tolist())
        conn.executemany(
            "INSERT INTO readings(seq, ts_ms, cell, voltage_v, current_a, temperature_c, flags, cycle_no, step_no) "
            "VALUES (?,?,?,?,?,?,?,NULLIF(?,-1),NULLIF(?,-1))",
            rows,
        )
        conn.execute(
            "INSERT INTO import_ledger(key, last_row, rows, last_ts_ms) VALUES (?,?,?,?) ON CONFLICT(key) DO UPDATE "
            "SET last_row=MAX(last_row, excluded.last_row), rows=rows+excluded.rows, last_ts_ms=excluded.last_ts_ms",
            (origin.key, int(origin.row.max()), n, int(batch.ts_ms.max())),
        )
        return first, first + n - 1

    def _insert_events(self, events: Sequence[Event]) -> int:
        first = self._next_seq("events", len(events))
        self.db.conn.executemany(
            "INSERT INTO events(seq, ts_ms, kind, level, source, cell, message, data) VALUES (?,?,?,?,?,?,?,?)",
            [
                (first + k, e.ts_ms, e.kind, e.level, e.source, e.cell, e.message, event_data_json(e.data))
                for k, e in enumerate(events)
            ],
        )
        return first + len(events) - 1

    def _insert_cycles(self, cycles: Sequence[Cycle]) -> list[int]:
        first = self._next_seq("cycles", len(cycles))
        seqs = list(range(first, first + len(cycles)))
        self.db.conn.executemany(
            "INSERT INTO cycles(seq, ts_ms, cell, cycle, payload) VALUES (?,?,?,?,?)",
            [
                (s, int(cy["ts"]), str(cy["cell"]), int(cy["cycle"]), json.dumps(cy, default=float))
                for s, cy in zip(seqs, cycles)
            ],
        )
        return seqs


def event_data_json(data: Any) -> str:
    """An event's data as strict JSON (no NaN); anything that cannot be is kept as its repr."""
    try:
        return json.dumps(data, default=str, allow_nan=False)
    except (ValueError, TypeError):
        return json.dumps({"repr": repr(data)[:1000]})


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
