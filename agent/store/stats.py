"""Store figures for health: one function, on whichever connection the caller owns.

The agent calls it on the store thread (its writer connection); the dashboard calls it on its own read-only
connection, so a page refresh never queues behind ingest. Same numbers, one definition.
"""

from __future__ import annotations

import sqlite3
from typing import TypedDict

from agent.store.schema import STREAMS


class StoreStats(TypedDict):
    store_depth_readings: int
    store_depth_events: int
    store_depth_cycles: int
    oldest_unsent_age_s: float
    store_bytes: int
    dropped_readings: int
    next_seq: int


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of pages in use: what the byte cap bounds (freed pages are reused before the file grows)."""
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0]) - int(
        conn.execute("PRAGMA freelist_count").fetchone()[0]
    )
    return pages * int(conn.execute("PRAGMA page_size").fetchone()[0])


def store_stats(conn: sqlite3.Connection, now_ms: int) -> StoreStats:
    depth = {s: int(conn.execute(f"SELECT count(*) FROM {s} WHERE sent = 0").fetchone()[0]) for s in STREAMS}
    oldest = conn.execute("SELECT ts_ms FROM readings WHERE sent = 0 ORDER BY seq LIMIT 1").fetchone()
    meta = dict(
        conn.execute("SELECT key, value FROM meta WHERE key IN ('dropped_readings', 'next_seq.readings')").fetchall()
    )
    return {
        "store_depth_readings": depth["readings"],
        "store_depth_events": depth["events"],
        "store_depth_cycles": depth["cycles"],
        "oldest_unsent_age_s": round(max(0.0, (now_ms - int(oldest[0])) / 1000.0), 1) if oldest else 0.0,
        "store_bytes": used_bytes(conn),
        "dropped_readings": int(meta.get("dropped_readings", 0)),
        "next_seq": int(meta.get("next_seq.readings", 1)),
    }
