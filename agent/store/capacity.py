"""How big the store may get: the byte cap, free disk space, and what goes when there is no room.

Policy (documented in README): acknowledged readings go first (however recent), then the *oldest unsent
readings*; every dropped reading is counted in ``meta.dropped_readings`` and reported by a
``store.dropped_readings`` event. Events and cycles are never dropped.

Two limits trigger it: ``max_bytes`` (pages in use) and ``min_free_bytes`` (room left on the filesystem, counting
the database's own free pages, which inserts reuse before the file grows). The free-space check also runs on the
write path (at most once a second), because a disk that fills between maintenance runs is exactly the case that
matters. Last line of defence: a small reserve file beside the database, released on SQLITE_FULL so that SQLite
has room to delete (a delete needs WAL space too).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path

from drivers.base import Event

log = logging.getLogger("agent.store")


class StoreFull(Exception):
    """The disk is full even after dropping readings; the batch was not stored."""


class CapacityMixin:
    path: Path
    conn: sqlite3.Connection | None
    max_bytes: int
    min_free_bytes: int
    reserve_bytes: int
    _page_size: int
    _room_checked: float = 0.0

    # ---------------------------------------------------------------- measuring
    def used_bytes(self) -> int:
        """Bytes of pages in use: what the cap bounds (freed pages are reused before the file grows)."""
        c = self.conn
        pages = c.execute("PRAGMA page_count").fetchone()[0] - c.execute("PRAGMA freelist_count").fetchone()[0]  # type: ignore
        return pages * self._page_size

    def file_bytes(self) -> int:
        """Bytes on disk: database file plus WAL."""
        return sum(p.stat().st_size for p in (self.path, Path(str(self.path) + "-wal")) if p.exists())

    def room_bytes(self) -> int:
        """Free filesystem space plus the database's free pages: how much more the store can take."""
        free_pages = self.conn.execute("PRAGMA freelist_count").fetchone()[0]  # type: ignore[union-attr]
        return shutil.disk_usage(self.path.parent).free + free_pages * self._page_size

    # ---------------------------------------------------------------- reserve
    @property
    def _reserve_path(self) -> Path:
        return Path(str(self.path) + ".reserve")

    def _ensure_reserve(self) -> None:
        if self.reserve_bytes <= 0 or self._reserve_path.exists():
            return
        try:
            if shutil.disk_usage(self.path.parent).free < self.min_free_bytes + 2 * self.reserve_bytes:
                return
            with open(self._reserve_path, "wb") as f:
                f.write(b"\0" * self.reserve_bytes)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            log.debug("reserve not created: %s", exc)
            self._reserve_path.unlink(missing_ok=True)

    def _release_reserve(self) -> bool:
        try:
            self._reserve_path.unlink()
            return True
        except FileNotFoundError:
            return False

    # ---------------------------------------------------------------- dropping
    def _drop_oldest_unsent(self, n: int) -> tuple[int, int, int]:
        """Delete the n oldest unsent readings; returns (count, first seq, last seq)."""
        c = self.conn
        with c:  # type: ignore[union-attr]
            c.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            rng = c.execute(
                "SELECT min(seq), max(seq), count(*) FROM (SELECT seq FROM readings WHERE sent=0 "  # type: ignore
                "ORDER BY seq LIMIT ?)",
                (n,),
            ).fetchone()
            if not rng[2]:
                return 0, 0, 0
            c.execute("DELETE FROM readings WHERE seq BETWEEN ? AND ? AND sent=0", (rng[0], rng[1]))  # type: ignore
            c.execute("UPDATE meta SET value = value + ? WHERE key='dropped_readings'", (rng[2],))  # type: ignore
        log.warning("store full: dropped %d oldest unsent readings (seq %d..%d)", rng[2], rng[0], rng[1])
        return int(rng[2]), int(rng[0]), int(rng[1])

    def _drop_oldest_sent(self, n: int) -> int:
        c = self.conn
        with c:  # type: ignore[union-attr]
            c.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            return c.execute(
                "DELETE FROM readings WHERE seq IN (SELECT seq FROM readings WHERE sent=1 "  # type: ignore
                "ORDER BY seq LIMIT ?)",
                (n,),
            ).rowcount

    def _dropped_event(self, dropped: tuple[int, int, int], why: str) -> Event:
        count, lo, hi = dropped
        return Event(
            "store.dropped_readings",
            f"{why}: dropped {count} oldest unsent readings (seq {lo}..{hi}) to make room",
            level="alarm",
            source="store",
            ts_ms=self.clock_ms(),  # type: ignore[attr-defined]
            data={
                "count": count,
                "seq_first": lo,
                "seq_last": hi,
                "total_dropped": int(self.meta("dropped_readings", 0)),
            },
        )  # type: ignore[attr-defined]

    def _shrink(self, free_needed: int, chunk: int, why: str) -> Event | None:
        """Free about ``free_needed`` bytes of pages: acknowledged readings first, then the oldest unsent."""
        c = self.conn
        total = [0, 0, 0]
        goal = self.used_bytes() - free_needed
        for unsent in (False, True):
            for _ in range(1000):
                used = self.used_bytes()
                if used <= goal:
                    break
                lo, hi = c.execute("SELECT min(seq), max(seq) FROM readings").fetchone()  # type: ignore[union-attr]
                if lo is None:
                    break
                n = max(100, min(chunk, int((used - goal) / max(used / (hi - lo + 1), 1.0)) + 1))
                if unsent:
                    count, first, last = self._drop_oldest_unsent(n)
                    if not count:
                        break
                    total = [total[0] + count, total[1] or first, last]
                elif not self._drop_oldest_sent(n):
                    break
        try:
            c.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
        except sqlite3.Error:
            pass
        return self._dropped_event((total[0], total[1], total[2]), why) if total[0] else None

    def enforce_limits(self, chunk: int = 50_000) -> list[Event]:
        """Apply the byte cap and the free-space floor; returns the drop event (also stored), if any."""
        self._room_checked = time.monotonic()
        need = 0
        why = ""
        used = self.used_bytes()
        if used > self.max_bytes:
            need, why = used - int(self.max_bytes * 0.9), "store over its byte cap"
        room = self.room_bytes()
        if room < self.min_free_bytes:
            short = self.min_free_bytes - room + self.min_free_bytes // 4
            if short > need:
                need, why = short, f"disk almost full ({room // 1024} KiB left)"
        if need <= 0:
            return []
        ev = self._shrink(need, chunk, why)
        if ev is None:
            return []
        self.append_events([ev])  # type: ignore[attr-defined]
        return [ev]

    def maybe_make_room(self) -> list[Event]:
        """On the write path: check the disk at most once a second."""
        if time.monotonic() - self._room_checked < 1.0:
            return []
        self._room_checked = time.monotonic()
        if shutil.disk_usage(self.path.parent).free >= self.min_free_bytes:
            return []
        return self.enforce_limits()
