"""SQLite store-and-forward: the agent's only queue.

Readings, events and cycle summaries are appended in one transaction per batch and stay until the uplink has
seen the broker's PUBACK for them (``mark_sent``). Every stream has its own persistent ``seq`` counter kept in
``meta`` and advanced in the same transaction as the rows, so a seq is never reused, even after a crash.

Policies:
- Byte cap and free-space floor (``capacity.py``): acknowledged readings go first, then the oldest *unsent
  readings*; the count is kept in ``meta.dropped_readings`` and an event is raised. Events and cycles never go.
- Seq safety (``seqsafety.py``): after a quarantine or a rewind the counters jump forward, never back.
- A database that cannot be opened or fails ``PRAGMA quick_check`` is renamed ``<name>.corrupt-<UTC time>``
  (with its -wal/-shm) and a fresh one is started, with a ``store.quarantined`` event in it.

Not thread-safe by design: the agent calls a Store from one dedicated thread.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from agent.faultpoints import faultpoint
from agent.store.capacity import CapacityMixin, StoreFull
from agent.store.schema import SCHEMA_VERSION, STREAMS, SchemaTooNew, migrate
from agent.store.seqsafety import SeqSafetyMixin
from drivers.base import Event, ReadingBatch

log = logging.getLogger("agent.store")


@dataclass(slots=True)
class ReadingRows:
    """Readings read back from the store, columnar. ``cell`` indexes the store's cells table."""

    seq: np.ndarray  # int64
    ts_ms: np.ndarray  # int64
    cell: np.ndarray  # int64 store cell index
    voltage_v: np.ndarray  # float64, NaN where NULL
    current_a: np.ndarray
    temperature_c: np.ndarray
    flags: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    def head(self, n: int) -> ReadingRows:
        return ReadingRows(*(getattr(self, f)[:n] for f in self.__slots__))  # type: ignore[attr-defined]


READING_COLS = "seq, ts_ms, cell, voltage_v, current_a, temperature_c, flags"


def _utc_stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y%m%dT%H%M%SZ")


class Store(SeqSafetyMixin, CapacityMixin):
    def __init__(
        self,
        path: str | Path,
        synchronous: str = "FULL",
        max_bytes: int = 2 * 1024**3,
        keep_sent_s: float = 3600.0,
        integrity_check: bool = True,
        reserve_bytes: int = 4 * 1024**2,
        min_free_bytes: int = 32 * 1024**2,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ):
        self.path = Path(path)
        self.synchronous = synchronous
        self.max_bytes = max_bytes
        self.keep_sent_s = keep_sent_s
        self.integrity_check = integrity_check
        self.clock_ms = clock_ms
        self.reserve_bytes = reserve_bytes
        self.min_free_bytes = min_free_bytes
        self.conn: sqlite3.Connection | None = None
        self.last_seq: dict[str, int] = {s: 0 for s in STREAMS}  # highest committed seq per stream
        self._cells: dict[str, int] = {}
        self._cell_ids: dict[int, str] = {}
        self._page_size = 4096

    # ------------------------------------------------------------------ open / close / quarantine
    def open(self) -> list[Event]:
        """Open (or create) the database; returns events that happened while opening (quarantine, migration)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        events: list[Event] = []
        try:
            self._connect()
            if self.integrity_check:
                result = self.conn.execute("PRAGMA quick_check").fetchone()[0]  # type: ignore[union-attr]
                if result != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {result}")
            before, after = migrate(self.conn)  # type: ignore[arg-type]
            if 0 < before < after:
                events.append(
                    Event(
                        "store.migrated",
                        f"store schema migrated from v{before} to v{after}",
                        level="info",
                        source="store",
                        ts_ms=self.clock_ms(),
                    )
                )
        except (sqlite3.DatabaseError, SchemaTooNew) as exc:
            moved = self._quarantine()
            self._connect()
            migrate(self.conn)  # type: ignore[arg-type]
            self._raise_seq_floor(moved)
            events.append(
                Event(
                    "store.quarantined",
                    f"store {self.path.name} was unusable ({exc}); moved aside to {moved.name} and a "
                    "fresh store started. Unsent data in the moved file was not uploaded.",
                    level="critical",
                    source="store",
                    ts_ms=self.clock_ms(),
                    data={"moved_to": str(moved), "reason": str(exc)[:500]},
                )
            )
        self._load_cells()
        self._load_last_seq()
        rewound = self._check_rewound()
        if rewound:
            events.append(rewound)
        self._ensure_reserve()
        if events:
            self.append_events(events)
        return events

    def _connect(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.DatabaseError(f"cannot switch to WAL (journal_mode={mode})")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute("PRAGMA journal_size_limit=16777216")  # truncate the WAL back to 16 MB after checkpoints
            self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        except Exception:
            conn.close()
            raise
        self.conn = conn

    def _quarantine(self) -> Path:
        if self.conn is not None:
            try:
                self.conn.close()
            except sqlite3.Error:
                pass
            self.conn = None
        stamp = _utc_stamp(self.clock_ms())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(target) + suffix))
        log.error("store quarantined: moved %s to %s", self.path, target)
        return target

    def reopen_fresh(self, reason: str) -> list[Event]:
        """Runtime corruption: move the database aside and start a fresh one (the agent keeps running)."""
        moved = self._quarantine()
        self._cells.clear()
        self._cell_ids.clear()
        self._connect()
        migrate(self.conn)  # type: ignore[arg-type]
        self._raise_seq_floor(moved)
        ev = Event(
            "store.quarantined",
            f"store became unusable at run time ({reason}); moved aside to {moved.name} and a fresh store started",
            level="critical",
            source="store",
            ts_ms=self.clock_ms(),
            data={"moved_to": str(moved), "reason": reason[:500]},
        )
        self.append_events([ev])
        return [ev]

    def close(self) -> None:
        if self.conn is not None:
            self.write_seq_hint()
            try:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self.conn.close()
            self.conn = None

    # ------------------------------------------------------------------ cells
    def _load_cells(self) -> None:
        self._cells = {cid: idx for idx, cid in self.conn.execute("SELECT idx, id FROM cells")}  # type: ignore
        self._cell_ids = {v: k for k, v in self._cells.items()}

    def _cell_lut(self, cells: tuple[str, ...], source: str) -> np.ndarray:
        """Store indices for a batch's cell table (inserting new cells; inside the caller's transaction)."""
        out = np.empty(len(cells), dtype=np.int64)
        for k, cid in enumerate(cells):
            idx = self._cells.get(cid)
            if idx is None:
                idx = self.conn.execute("INSERT INTO cells(id, source) VALUES (?, ?)", (cid, source)).lastrowid  # type: ignore
                self._cells[cid] = idx
                self._cell_ids[idx] = cid
            out[k] = idx
        return out

    @property
    def cell_ids(self) -> dict[int, str]:
        return self._cell_ids

    # ------------------------------------------------------------------ append
    def _next_seq(self, stream: str, n: int) -> int:
        c = self.conn
        first = c.execute("SELECT value FROM meta WHERE key=?", (f"next_seq.{stream}",)).fetchone()[0]  # type: ignore
        c.execute("UPDATE meta SET value=? WHERE key=?", (first + n, f"next_seq.{stream}"))  # type: ignore
        return int(first)

    def append(self, batch: ReadingBatch, source: str = "", events: Iterable[Event] = ()) -> tuple[int, int]:
        """Store a batch (and any events raised with it) in one transaction; returns its (first, last) seq.

        On SQLITE_FULL the byte-cap policy drops the oldest unsent readings and the write is tried once more;
        if that fails too, StoreFull is raised and nothing of the batch is stored.
        """
        events = list(events) + self.maybe_make_room()
        try:
            return self._append(batch, source, events)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
                raise
        # The disk filled before the free-space check saw it: free the reserve so SQLite has room to delete,
        # drop the oldest unsent readings, and try once more.
        self._release_reserve()
        try:
            ev = self._shrink(max(self.min_free_bytes, 64 * len(batch)), 50_000, "disk full")
        except sqlite3.OperationalError as exc:
            raise StoreFull(f"disk full and no room to drop readings: {exc}") from exc
        if ev is not None:
            events.append(ev)
        try:
            return self._append(batch, source, events)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise StoreFull(f"disk full: {exc}") from exc
            raise

    def _append(self, batch: ReadingBatch, source: str, events: list[Event]) -> tuple[int, int]:
        c = self.conn
        n = len(batch)
        c.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
        try:
            first = last = last_event = 0
            if n:
                lut = self._cell_lut(batch.cells, source)
                first = self._next_seq("readings", n)
                last = first + n - 1
                rows = zip(
                    range(first, last + 1),
                    batch.ts_ms.tolist(),
                    lut[batch.cell].tolist(),
                    batch.voltage_v.tolist(),
                    batch.current_a.tolist(),
                    batch.temperature_c.tolist(),
                    batch.flags.tolist(),
                )
                c.executemany(
                    "INSERT INTO readings(seq, ts_ms, cell, voltage_v, current_a, temperature_c, flags) "  # type: ignore
                    "VALUES (?,?,?,?,?,?,?)",
                    rows,
                )
            if events:
                last_event = self._insert_events(events)
            c.execute("COMMIT")  # type: ignore[union-attr]
        except BaseException:
            if c.in_transaction:  # type: ignore[union-attr]
                c.execute("ROLLBACK")  # type: ignore[union-attr]
            raise
        if n:
            self.last_seq["readings"] = last
        if last_event:
            self.last_seq["events"] = last_event
        faultpoint("store.after_commit")
        return first, last

    def _insert_events(self, events: list[Event]) -> int:
        """Insert inside the caller's transaction; returns the last seq (apply to last_seq after COMMIT)."""
        first = self._next_seq("events", len(events))
        self.conn.executemany(  # type: ignore[union-attr]
            "INSERT INTO events(seq, ts_ms, kind, level, source, cell, message, data) VALUES (?,?,?,?,?,?,?,?)",
            [
                (
                    first + k,
                    e.ts_ms,
                    e.kind,
                    e.level,
                    e.source,
                    e.cell,
                    e.message,
                    json.dumps(e.data, default=str, allow_nan=False)
                    if _finite(e.data)
                    else json.dumps({"repr": repr(e.data)[:1000]}),
                )
                for k, e in enumerate(events)
            ],
        )
        return first + len(events) - 1

    def append_events(self, events: list[Event]) -> None:
        if not events:
            return
        with self.conn:  # type: ignore[union-attr]
            self.conn.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            last = self._insert_events(events)
        self.last_seq["events"] = last

    def append_cycles(self, cycles: list[dict[str, Any]]) -> list[int]:
        """Store per-cycle summaries (dicts with at least cell, cycle, ts); returns their seqs."""
        if not cycles:
            return []
        with self.conn:  # type: ignore[union-attr]
            self.conn.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            first = self._next_seq("cycles", len(cycles))
            seqs = list(range(first, first + len(cycles)))
            self.conn.executemany(  # type: ignore[union-attr]
                "INSERT INTO cycles(seq, ts_ms, cell, cycle, payload) VALUES (?,?,?,?,?)",
                [
                    (s, int(cy["ts"]), str(cy["cell"]), int(cy["cycle"]), json.dumps(cy, default=float))
                    for s, cy in zip(seqs, cycles)
                ],
            )
        self.last_seq["cycles"] = seqs[-1]
        return seqs

    # ------------------------------------------------------------------ read / acknowledge
    def read_readings(
        self, after_seq: int = 0, limit: int = 10_000, upto_seq: int | None = None, unsent_only: bool = True
    ) -> ReadingRows:
        where = "seq > ?" + (" AND sent = 0" if unsent_only else "")
        args: list[Any] = [after_seq]
        if upto_seq is not None:
            where += " AND seq <= ?"
            args.append(upto_seq)
        args.append(limit)
        rows = self.conn.execute(  # type: ignore[union-attr]
            f"SELECT {READING_COLS} FROM readings WHERE {where} ORDER BY seq LIMIT ?", args
        ).fetchall()
        if not rows:
            z = np.zeros(0, np.int64)
            zf = np.zeros(0)
            return ReadingRows(z, z, z, zf, zf, zf, z)
        a = np.array(rows, dtype=np.float64)  # NULL -> NaN; integers here are exact below 2**53
        return ReadingRows(
            a[:, 0].astype(np.int64),
            a[:, 1].astype(np.int64),
            a[:, 2].astype(np.int64),
            a[:, 3],
            a[:, 4],
            a[:, 5],
            a[:, 6].astype(np.int64),
        )

    def read_events(self, after_seq: int = 0, limit: int = 500, upto_seq: int | None = None) -> list[dict[str, Any]]:
        q = "SELECT seq, ts_ms, kind, level, source, cell, message, data FROM events WHERE sent=0 AND seq > ?"
        args: list[Any] = [after_seq]
        if upto_seq is not None:
            q += " AND seq <= ?"
            args.append(upto_seq)
        rows = self.conn.execute(q + " ORDER BY seq LIMIT ?", [*args, limit]).fetchall()  # type: ignore
        return [
            {
                "seq": r[0],
                "ts": r[1],
                "kind": r[2],
                "level": r[3],
                "source": r[4],
                "cell": r[5],
                "message": r[6],
                "data": json.loads(r[7]),
            }
            for r in rows
        ]

    def read_cycles(self, after_seq: int = 0, limit: int = 200, upto_seq: int | None = None) -> list[dict[str, Any]]:
        q = "SELECT seq, payload FROM cycles WHERE sent=0 AND seq > ?"
        args: list[Any] = [after_seq]
        if upto_seq is not None:
            q += " AND seq <= ?"
            args.append(upto_seq)
        rows = self.conn.execute(q + " ORDER BY seq LIMIT ?", [*args, limit]).fetchall()  # type: ignore
        return [{**json.loads(p), "seq": s} for s, p in rows]

    def mark_sent(self, stream: str, ranges: Iterable[tuple[int, int]]) -> None:
        """Mark rows acknowledged by the broker (inclusive seq ranges), all in one transaction."""
        if stream not in STREAMS:
            raise ValueError(stream)
        ranges = list(ranges)
        if not ranges:
            return
        with self.conn:  # type: ignore[union-attr]
            self.conn.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            self.conn.executemany(  # type: ignore[union-attr]
                f"UPDATE {stream} SET sent=1 WHERE seq BETWEEN ? AND ? AND sent=0", ranges
            )

    # ------------------------------------------------------------------ stats / maintenance
    def meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()  # type: ignore
        return row[0] if row else default

    def stats(self) -> dict[str, Any]:
        c = self.conn
        depth = {s: c.execute(f"SELECT count(*) FROM {s} WHERE sent=0").fetchone()[0] for s in STREAMS}  # type: ignore
        oldest = c.execute("SELECT ts_ms FROM readings WHERE sent=0 ORDER BY seq LIMIT 1").fetchone()  # type: ignore
        now = self.clock_ms()
        return {
            "depth_readings": depth["readings"],
            "depth_events": depth["events"],
            "depth_cycles": depth["cycles"],
            "oldest_unsent_age_s": max(0.0, (now - oldest[0]) / 1000.0) if oldest else 0.0,
            "bytes": self.used_bytes(),
            "dropped_readings": int(self.meta("dropped_readings", 0)),
            "next_seq": int(self.meta("next_seq.readings", 1)),
            "schema_version": SCHEMA_VERSION,
        }

    def maintain(self, chunk: int = 50_000) -> list[Event]:
        """Retention of acknowledged readings, then the byte cap and free-space floor. Bounded chunks."""
        c = self.conn
        self.write_seq_hint()
        self._ensure_reserve()
        cutoff = self.clock_ms() - int(self.keep_sent_s * 1000)
        with c:  # type: ignore[union-attr]
            c.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            c.execute(
                "DELETE FROM readings WHERE seq IN (SELECT seq FROM readings WHERE sent=1 AND ts_ms < ? "  # type: ignore
                "ORDER BY seq LIMIT ?)",
                (cutoff, chunk),
            )
        return self.enforce_limits(chunk)


def _finite(obj: Any) -> bool:
    try:
        json.dumps(obj, default=str, allow_nan=False)
        return True
    except (ValueError, TypeError):
        return False
