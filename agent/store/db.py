"""The store's SQLite connection: opening it, telling corruption from an unusable file, moving a bad one aside.

A ``Db`` always holds a live connection; the parts of the store (writer, cursor, acker, capacity) get one at
construction and never see ``None``. Opening can fail in two ways that must not be confused (issue 14.3):

- the file is **corrupt** (SQLITE_CORRUPT / SQLITE_NOTADB, a failed ``quick_check``) or written by a newer
  agent: it is moved aside (``quarantine``) and a fresh store starts, with an event;
- the file is fine but **unusable right now**: locked by another process, read-only for this user (a store left
  owned by root), a path that cannot be opened, a full disk. Moving it aside would strand its unsent readings, so
  the caller retries and then stops with ``StoreUnavailable`` (exit code 3) and ``battery-twin doctor`` names
  the cause.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("agent.store")

CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_CODE_NAMES = {
    sqlite3.SQLITE_BUSY: "SQLITE_BUSY: the database is locked by another connection",
    sqlite3.SQLITE_LOCKED: "SQLITE_LOCKED: a table is locked",
    sqlite3.SQLITE_READONLY: "SQLITE_READONLY: this user cannot write the database or its -wal/-shm files",
    sqlite3.SQLITE_CANTOPEN: "SQLITE_CANTOPEN: the file (or its folder) cannot be opened",
    sqlite3.SQLITE_PERM: "SQLITE_PERM: access denied",
    sqlite3.SQLITE_IOERR: "SQLITE_IOERR: an I/O error from the operating system",
    sqlite3.SQLITE_FULL: "SQLITE_FULL: the disk is full",
}


class StoreCorrupt(Exception):
    """The database file is damaged or of a newer schema: it is quarantined and a fresh store starts."""


class StoreUnavailable(Exception):
    """The database exists but cannot be used now (locked, read-only, unreachable): never quarantined."""

    exit_code = 3


def primary_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_corruption(exc: BaseException) -> bool:
    """Only real damage counts: an open that fails for any other reason must not move a healthy file aside."""
    return isinstance(exc, StoreCorrupt) or primary_code(exc) in CORRUPT_CODES


def may_clear(exc: BaseException) -> bool:
    """A lock or an I/O hiccup may be gone in a moment; a read-only file or a missing folder will not."""
    return primary_code(exc) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR)


def describe(exc: BaseException) -> str:
    code = primary_code(exc)
    return f"{exc} ({_CODE_NAMES[code]})" if code in _CODE_NAMES else str(exc)


def readonly_uri(path: Path) -> str:
    """``file:`` URI for a read-only connection; ``as_uri`` escapes ``#``, ``?`` and ``%`` in the path (a raw
    f-string let a ``#`` cut the query off, and the database opened read-write)."""
    return path.resolve().as_uri() + "?mode=ro"


@dataclass(frozen=True, slots=True)
class Db:
    """A live connection to the store file, with the figures every part needs."""

    path: Path
    conn: sqlite3.Connection
    page_size: int

    def meta(self, key: str, default: int = 0) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return int(row[0]) if row else default

    def close(self) -> None:
        self.conn.close()


def connect(path: Path, synchronous: str, busy_timeout_s: float) -> Db:
    """Open in WAL mode and check that this process can write (a rolled-back write): a file that opens
    read-only or stays locked fails here, at start, not on the first batch."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch {path.name} to WAL (journal_mode={mode})")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA journal_size_limit=16777216")  # truncate the WAL back to 16 MB after checkpoints
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(f"PRAGMA user_version = {version}")  # a real write (rolled back): read-only fails here
        finally:
            conn.execute("ROLLBACK")
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    except BaseException:
        conn.close()
        raise
    return Db(path, conn, page_size)


def check_integrity(db: Db) -> None:
    result = db.conn.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        raise StoreCorrupt(f"quick_check: {result}")


def utc_stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y%m%dT%H%M%SZ")


def quarantine(path: Path, now_ms: int) -> Path:
    """Move the database (and its -wal/-shm) to ``<name>.corrupt-<UTC time>``; returns the new path."""
    stamp = utc_stamp(now_ms)
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(target) + suffix))
    log.error("store quarantined: moved %s to %s", path, target)
    return target
