"""Keeping ``seq`` unique for ever, even when the database itself is lost or rewound.

The counters live in ``meta`` and advance in the same transaction as the rows. Two things can still take a store
back in time: a quarantine (the database is unusable and a fresh one starts) and a rewind (committed transactions
lost to a torn WAL or a disk that lied about fsync). Seqs handed out before may already be at the broker, so in
both cases the counters jump forward past every source we have: the old database's meta if readable, a hint file
written beside the database at every maintenance and at close (plus a margin for the readings since), and
``unix_ms * 1000`` (enough on its own as long as the clock is right).

The hint is advice, never trusted blindly: a value that is not an integer in ``[1, MAX_SEQ]`` is ignored with a
warning (a hint of 2**64 used to overflow SQLite's integer and crash every start).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path

from agent.store.db import Db, readonly_uri
from agent.store.schema import STREAMS
from drivers.base import Event

log = logging.getLogger("agent.store")

HINT_MARGIN = 10_000_000  # readings that may have been committed after the hint was written
MAX_SEQ = 2**62  # far beyond any real counter (unix_ms * 1000 is ~2**51), far below SQLite's 2**63 - 1


def hint_path(db_path: Path) -> Path:
    return Path(str(db_path) + ".seq")


def load_counters(db: Db) -> dict[str, int]:
    """The highest committed seq per stream."""
    return {s: db.meta(f"next_seq.{s}", 1) - 1 for s in STREAMS}


def write_hint(db_path: Path, last_seq: dict[str, int]) -> None:
    """Remember the seq counters beside the database (at maintenance and close)."""
    path = hint_path(db_path)
    try:
        tmp = path.with_suffix(".seq.tmp")
        tmp.write_text(json.dumps({s: v + 1 for s, v in last_seq.items()}))
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("seq hint not written: %s", exc)


def read_hint(db_path: Path) -> dict[str, int]:
    """The hint's next-seq values that are plausible; anything else is ignored (and logged)."""
    path = hint_path(db_path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict):
        log.warning("seq hint %s is not an object; ignored", path)
        return {}
    out: dict[str, int] = {}
    for stream, value in doc.items():
        if stream not in STREAMS:
            continue
        if type(value) is not int or not 1 <= value <= MAX_SEQ:
            log.warning("seq hint %s: %s = %.40r is not a seq in [1, 2**62]; ignored", path, stream, value)
            continue
        out[stream] = value
    return out


def _old_counters(old_db: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        old = sqlite3.connect(readonly_uri(old_db), uri=True)
        try:
            for key, value in old.execute("SELECT key, value FROM meta WHERE key LIKE 'next_seq.%'"):
                stream = key.removeprefix("next_seq.")
                if stream in STREAMS and type(value) is int and 1 <= value <= MAX_SEQ:
                    out[stream] = value
        finally:
            old.close()
    except sqlite3.Error:
        pass
    return out


def raise_floor(db: Db, now_ms: int, old_db: Path | None = None) -> dict[str, int]:
    """Move every counter past the clock floor, the hint (plus margin) and the old database's counters;
    returns the new highest committed seq per stream."""
    floors = {s: max(0, min(now_ms * 1000, MAX_SEQ)) for s in STREAMS}
    for stream, value in read_hint(db.path).items():
        floors[stream] = max(floors[stream], min(value + HINT_MARGIN, MAX_SEQ))
    if old_db is not None:
        for stream, value in _old_counters(old_db).items():
            floors[stream] = max(floors[stream], value)
    with db.conn:
        db.conn.execute("BEGIN IMMEDIATE")
        for stream, floor in floors.items():
            db.conn.execute("UPDATE meta SET value = max(value, ?) WHERE key = ?", (floor, f"next_seq.{stream}"))
    return load_counters(db)


def check_rewound(db: Db, last_seq: dict[str, int], now_ms: int) -> tuple[dict[str, int], Event | None]:
    """A database behind its own seq hint lost committed transactions: jump forward and say so."""
    hint = read_hint(db.path)
    behind = {s: v - 1 - last_seq[s] for s, v in hint.items() if v - 1 > last_seq[s]}
    if not behind:
        return last_seq, None
    counters = raise_floor(db, now_ms)
    return counters, Event(
        "store.rewound",
        f"the store is behind its seq hint by {behind}: committed data was lost "
        "(torn WAL or a disk that lied about fsync); seq jumps forward so no seq is reused",
        level="critical",
        source="store",
        ts_ms=now_ms,
        data={"behind": behind},
    )
