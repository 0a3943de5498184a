"""SQLite store-and-forward: the agent's only queue, assembled from small parts over one live connection.

- ``Writer`` (writer.py): a batch's readings, events and cycles in one transaction; seq counters in ``meta``.
- ``UnsentCursor`` and ``Acker`` (cursor.py): read what the broker has not acknowledged; mark it sent on PUBACK.
- ``Capacity`` (capacity.py): byte cap and free-space floor; drops acknowledged, then the oldest unsent
  readings (counted, with an event); never events or cycles.
- seq safety (seqsafety.py): after a quarantine or a rewind the counters jump forward, never back.
- ``store_stats`` (stats.py): the figures health shows, the same function the dashboard calls.

``Store.open`` returns an open store or raises: there is no half-open store. A corrupt file (or one of a newer
schema) is moved aside and a fresh one started, with a ``store.quarantined`` event; a file that is merely unusable
now (locked, read-only, unreachable) is retried and then refused with ``StoreUnavailable``, untouched (db.py).

Not thread-safe by design: the agent calls a Store from one dedicated thread (``worker.StoreWorker``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.store import seqsafety
from agent.store.capacity import Capacity, Limits, StoreFull
from agent.store.cursor import Acker, UnsentCursor
from agent.store.db import (
    Db,
    StoreCorrupt,
    StoreUnavailable,
    check_integrity,
    connect,
    describe,
    is_corruption,
    may_clear,
    quarantine,
)
from agent.store.schema import SchemaTooNew, migrate
from agent.store.stats import StoreStats, store_stats
from agent.store.writer import Cycle, Writer, is_disk_full
from drivers.backoff import Backoff
from drivers.base import Event, ReadingBatch

log = logging.getLogger("agent.store")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class OpenPolicy:
    """How hard to try a store that is locked, read-only or unreachable before giving up (never quarantined).

    A lock may clear by itself: with the defaults a locked store is tried 5 times over about a minute (SQLite's
    busy wait included). A read-only file or a path that cannot be opened will not: one more try after a second,
    then ``StoreUnavailable`` (systemd's restart is the slower retry)."""

    attempts: int = 5
    busy_timeout_s: float = 10.0
    backoff: Callable[[], Backoff] = field(default=lambda: Backoff(initial_s=1.0, max_s=8.0, jitter=0.5))
    sleep: Callable[[float], None] = time.sleep


class Store:
    def __init__(self, db: Db, synchronous: str, limits: Limits, clock_ms: Callable[[], int]):
        """Use ``Store.open``. The parts share ``db``, which stays live until ``close``."""
        self.synchronous = synchronous
        self.limits = limits
        self.clock_ms = clock_ms
        self.opened: list[Event] = []  # what happened while opening (quarantine, migration, rewind)
        self._attach(db)

    def _attach(self, db: Db) -> None:
        self.db = db
        self.writer = Writer(db, seqsafety.load_counters(db))
        self.unsent = UnsentCursor(db)
        self.acker = Acker(db)
        self.capacity = Capacity(db, self.limits, self.clock_ms)

    # ------------------------------------------------------------------ open / close / quarantine
    @classmethod
    def open(
        cls,
        path: str | Path,
        synchronous: str = "FULL",
        max_bytes: int = Limits.max_bytes,
        keep_sent_s: float = Limits.keep_sent_s,
        integrity_check: bool = True,
        reserve_bytes: int = Limits.reserve_bytes,
        min_free_bytes: int = Limits.min_free_bytes,
        clock_ms: Callable[[], int] = _wall_ms,
        policy: OpenPolicy | None = None,
    ) -> Store:
        """Open (or create) the store; raises ``StoreUnavailable`` when the file cannot be used now."""
        path = Path(path)
        limits = Limits(max_bytes, min_free_bytes, reserve_bytes, keep_sent_s)
        policy = policy or OpenPolicy()
        backoff = policy.backoff()
        for attempt in range(1, policy.attempts + 1):
            try:
                db, events = _open_db(path, synchronous, integrity_check, policy.busy_timeout_s, clock_ms)
                break
            except (sqlite3.Error, OSError) as exc:
                why = f"{type(exc).__name__}: {describe(exc)}"
                if attempt >= (policy.attempts if may_clear(exc) else min(2, policy.attempts)):
                    raise StoreUnavailable(
                        f"store {path} cannot be used: {why} (tried {attempt} times; the file was left as it "
                        "is). `battery-twin doctor` names the owner, mode and any process holding it."
                    ) from exc
                delay = backoff.next_delay()
                log.warning("store %s cannot be opened (attempt %d): %s; retrying in %.1f s", path, attempt, why, delay)
                policy.sleep(delay)
        store = cls(db, synchronous, limits, clock_ms)
        counters, rewound = seqsafety.check_rewound(db, store.writer.last_seq, clock_ms())
        store.writer.last_seq = counters
        if rewound is not None:
            events.append(rewound)
        store.capacity.ensure_reserve()
        if events:
            store.writer.append(events=events)
        store.opened = events
        return store

    def reopen_fresh(self, reason: str) -> list[Event]:
        """Corruption found at run time: move the database aside and start a fresh one (the agent keeps running)."""
        path = self.db.path
        self.db.close()
        db, moved = _fresh_db(path, self.synchronous, OpenPolicy.busy_timeout_s, self.clock_ms)
        self._attach(db)  # every part starts again on the fresh file
        ev = Event(
            "store.quarantined",
            f"store became unusable at run time ({reason}); moved aside to {moved.name} and a fresh store started",
            level="critical",
            source="store",
            ts_ms=self.clock_ms(),
            data={"moved_to": str(moved), "reason": reason[:500]},
        )
        self.writer.append(events=[ev])
        return [ev]

    def close(self) -> None:
        seqsafety.write_hint(self.db.path, self.writer.last_seq)
        try:
            self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.db.close()

    # ------------------------------------------------------------------ the parts, for callers
    @property
    def path(self) -> Path:
        return self.db.path

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    @property
    def last_seq(self) -> dict[str, int]:
        """Highest committed seq per stream (store thread only; the loop side reads ``StoreWorker.committed``)."""
        return self.writer.last_seq

    @property
    def cell_ids(self) -> dict[int, str]:
        return self.writer.cell_ids

    # ------------------------------------------------------------------ writing
    def append(
        self,
        batch: ReadingBatch | None,
        source: str = "",
        events: Iterable[Event] = (),
        cycles: Sequence[Cycle] = (),
    ) -> tuple[int, int]:
        """Store a batch with its events and cycles in one transaction; returns the readings' (first, last) seq.

        On SQLITE_FULL the byte-cap policy drops the oldest unsent readings and the write is tried once more;
        if that fails too, StoreFull is raised and nothing of the batch is stored."""
        events = list(events)
        room = self.capacity.maybe_make_room()
        if room is not None:
            events.append(room)
        try:
            done = self.writer.append(batch, source, events, cycles)
            return done.first, done.last
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
        # The disk filled before the free-space check saw it: free the reserve so SQLite has room to delete,
        # drop the oldest unsent readings, and try once more.
        self.capacity.release_reserve()
        n = len(batch) if batch is not None else 0
        try:
            dropped = self.capacity.shrink(max(self.limits.min_free_bytes, 64 * n), 50_000, "disk full")
        except sqlite3.OperationalError as exc:
            raise StoreFull(f"disk full and no room to drop readings: {exc}") from exc
        if dropped is not None:
            events.append(dropped)
        try:
            done = self.writer.append(batch, source, events, cycles)
            return done.first, done.last
        except sqlite3.OperationalError as exc:
            if is_disk_full(exc):
                raise StoreFull(f"disk full: {exc}") from exc
            raise

    def append_events(self, events: Sequence[Event]) -> None:
        self.writer.append(events=events)

    def append_cycles(self, cycles: Sequence[Cycle]) -> list[int]:
        """Store per-cycle summaries (dicts with at least cell, cycle, ts); returns their seqs."""
        return self.writer.append(cycles=cycles).cycle_seqs

    # ------------------------------------------------------------------ stats / maintenance
    def stats(self) -> StoreStats:
        return store_stats(self.db.conn, self.clock_ms())

    def maintain(self, chunk: int = 50_000) -> list[Event]:
        """Retention of acknowledged readings, then the byte cap and free-space floor. Bounded chunks."""
        seqsafety.write_hint(self.db.path, self.writer.last_seq)
        self.capacity.ensure_reserve()
        self.capacity.expire_sent(chunk)
        ev = self.capacity.enforce(chunk)
        if ev is None:
            return []
        self.writer.append(events=[ev])
        return [ev]


def _open_db(
    path: Path, synchronous: str, integrity_check: bool, busy_timeout_s: float, clock_ms: Callable[[], int]
) -> tuple[Db, list[Event]]:
    """One attempt: open, check, migrate. Corruption is handled here (quarantine); anything else propagates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = connect(path, synchronous, busy_timeout_s)
        try:
            if integrity_check:
                check_integrity(db)
            before, after = migrate(db.conn)
        except BaseException:
            db.close()
            raise
    except (sqlite3.DatabaseError, SchemaTooNew, StoreCorrupt) as exc:
        if not (isinstance(exc, SchemaTooNew) or is_corruption(exc)):
            raise
        db, moved = _fresh_db(path, synchronous, busy_timeout_s, clock_ms)
        return db, [
            Event(
                "store.quarantined",
                f"store {path.name} was unusable ({exc}); moved aside to {moved.name} and a "
                "fresh store started. Unsent data in the moved file was not uploaded.",
                level="critical",
                source="store",
                ts_ms=clock_ms(),
                data={"moved_to": str(moved), "reason": str(exc)[:500]},
            )
        ]
    if 0 < before < after:
        msg = f"store schema migrated from v{before} to v{after}"
        return db, [Event("store.migrated", msg, level="info", source="store", ts_ms=clock_ms())]
    return db, []


def _fresh_db(path: Path, synchronous: str, busy_timeout_s: float, clock_ms: Callable[[], int]) -> tuple[Db, Path]:
    moved = quarantine(path, clock_ms())
    db = connect(path, synchronous, busy_timeout_s)
    migrate(db.conn)
    seqsafety.raise_floor(db, clock_ms(), old_db=moved)
    return db, moved
