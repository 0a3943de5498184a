"""How big the store may get: the byte cap, free disk space, and what goes when there is no room.

Policy (documented in README): acknowledged readings go first (however recent), then the *oldest unsent
readings*; every dropped reading is counted in ``meta.dropped_readings`` and reported by a
``store.dropped_readings`` event. Events and cycles are never dropped.

Two limits trigger it: ``max_bytes`` (pages in use) and ``min_free_bytes`` (room left on the filesystem, counting
the database's own free pages, which inserts reuse before the file grows). The free-space check also runs on the
write path (at most once a second), because a disk that fills between maintenance runs is exactly the case that
matters. Last line of defence: a small reserve file beside the database, released on SQLITE_FULL so that SQLite
has room to delete (a delete needs WAL space too).

This part returns the drop event; the store writes it with the writer (one writer per database).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.store.db import Db
from agent.store.stats import used_bytes
from drivers.base import Event

MIN_DROP_CHUNK = 100  # readings: the smallest delete tried when the disk is full
log = logging.getLogger("agent.store")


class StoreFull(Exception):
    """The disk is full even after dropping readings; the batch was not stored."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 2 * 1024**3
    min_free_bytes: int = 32 * 1024**2
    reserve_bytes: int = 4 * 1024**2
    keep_sent_s: float = 3600.0


class Capacity:
    def __init__(self, db: Db, limits: Limits, clock_ms: Callable[[], int]):
        self.db = db
        self.limits = limits
        self.clock_ms = clock_ms
        self._room_checked = 0.0

    # ---------------------------------------------------------------- measuring
    def used_bytes(self) -> int:
        return used_bytes(self.db.conn)

    def file_bytes(self) -> int:
        """Bytes on disk: database file plus WAL."""
        paths = (self.db.path, Path(str(self.db.path) + "-wal"))
        return sum(p.stat().st_size for p in paths if p.exists())

    def room_bytes(self) -> int:
        """Free filesystem space plus the database's free pages: how much more the store can take."""
        free_pages = int(self.db.conn.execute("PRAGMA freelist_count").fetchone()[0])
        return shutil.disk_usage(self.db.path.parent).free + free_pages * self.db.page_size

    # ---------------------------------------------------------------- reserve
    @property
    def reserve_path(self) -> Path:
        return Path(str(self.db.path) + ".reserve")

    def ensure_reserve(self) -> None:
        size = self.limits.reserve_bytes
        if size <= 0 or self.reserve_path.exists():
            return
        try:
            if shutil.disk_usage(self.db.path.parent).free < self.limits.min_free_bytes + 2 * size:
                return
            with open(self.reserve_path, "wb") as f:
                f.write(b"\0" * size)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            log.debug("reserve not created: %s", exc)
            self.reserve_path.unlink(missing_ok=True)

    def release_reserve(self) -> bool:
        try:
            self.reserve_path.unlink()
            return True
        except FileNotFoundError:
            return False

    # ---------------------------------------------------------------- dropping
    def expire_sent(self, chunk: int) -> None:
        """Retention: acknowledged readings older than ``keep_sent_s`` go (bounded chunk)."""
        cutoff = self.clock_ms() - int(self.limits.keep_sent_s * 1000)
        conn = self.db.conn
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "DELETE FROM readings WHERE seq IN (SELECT seq FROM readings WHERE sent=1 AND ts_ms < ? "
                "ORDER BY seq LIMIT ?)",
                (cutoff, chunk),
            )

    def _drop_oldest_unsent(self, n: int) -> tuple[int, int, int]:
        """Delete the n oldest unsent readings; returns (count, first seq, last seq)."""
        conn = self.db.conn
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            lo, hi, count = conn.execute(
                "SELECT min(seq), max(seq), count(*) FROM (SELECT seq FROM readings WHERE sent=0 ORDER BY seq LIMIT ?)",
                (n,),
            ).fetchone()
            if not count:
                return 0, 0, 0
            conn.execute("DELETE FROM readings WHERE seq BETWEEN ? AND ? AND sent=0", (lo, hi))
            conn.execute("UPDATE meta SET value = value + ? WHERE key='dropped_readings'", (count,))
        log.warning("store full: dropped %d oldest unsent readings (seq %d..%d)", count, lo, hi)
        return int(count), int(lo), int(hi)

    def _drop_oldest_sent(self, n: int) -> int:
        conn = self.db.conn
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            return conn.execute(
                "DELETE FROM readings WHERE seq IN (SELECT seq FROM readings WHERE sent=1 ORDER BY seq LIMIT ?)", (n,)
            ).rowcount

    def _drop(self, unsent: bool, n: int) -> tuple[int, int, int] | None:
        """One bounded delete. On a full disk even a DELETE needs room (the WAL grows first): smaller chunks are
        tried, and if even the smallest fails the round ends (None) and the next maintenance round tries again."""
        while True:
            try:
                if unsent:
                    return self._drop_oldest_unsent(n)
                return self._drop_oldest_sent(n), 0, 0
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc):
                    raise
                if n <= MIN_DROP_CHUNK:
                    log.warning("store: no room even to delete (%s); trying again at the next maintenance", exc)
                    return None
                n = max(MIN_DROP_CHUNK, n // 4)

    def shrink(self, free_needed: int, chunk: int, why: str) -> Event | None:
        """Free about ``free_needed`` bytes of pages: acknowledged readings first, then the oldest unsent."""
        conn = self.db.conn
        count = first = last = 0
        goal = self.used_bytes() - free_needed
        for unsent in (False, True):
            for _ in range(1000):
                used = self.used_bytes()
                if used <= goal:
                    break
                lo, hi = conn.execute("SELECT min(seq), max(seq) FROM readings").fetchone()
                if lo is None:
                    break
                n = max(MIN_DROP_CHUNK, min(chunk, int((used - goal) / max(used / (hi - lo + 1), 1.0)) + 1))
                done = self._drop(unsent, n)
                if done is None or not done[0]:
                    break
                if unsent:
                    count, first, last = count + done[0], first or done[1], done[2]
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass
        if not count:
            return None
        return Event(
            "store.dropped_readings",
            f"{why}: dropped {count} oldest unsent readings (seq {first}..{last}) to make room",
            level="alarm",
            source="store",
            ts_ms=self.clock_ms(),
            data={
                "count": count,
                "seq_first": first,
                "seq_last": last,
                "total_dropped": self.db.meta("dropped_readings"),
            },
        )

    def enforce(self, chunk: int = 50_000) -> Event | None:
        """Apply the byte cap and the free-space floor; returns the drop event, if any (not yet stored)."""
        self._room_checked = time.monotonic()
        need, why = 0, ""
        used = self.used_bytes()
        if used > self.limits.max_bytes:
            need, why = used - int(self.limits.max_bytes * 0.9), "store over its byte cap"
        room = self.room_bytes()
        floor = self.limits.min_free_bytes
        if room < floor:
            short = floor - room + floor // 4
            if short > need:
                need, why = short, f"disk almost full ({room // 1024} KiB left)"
        return self.shrink(need, chunk, why) if need > 0 else None

    def maybe_make_room(self) -> Event | None:
        """On the write path: check the disk at most once a second."""
        if time.monotonic() - self._room_checked < 1.0:
            return None
        self._room_checked = time.monotonic()
        if shutil.disk_usage(self.db.path.parent).free >= self.limits.min_free_bytes:
            return None
        return self.enforce()
