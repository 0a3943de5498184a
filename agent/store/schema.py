"""Store schema and forward migrations.

``MIGRATIONS[n]`` takes a database from version n-1 to n. A database written by a newer agent (a version above
``SCHEMA_VERSION``) is not touched: the store moves it aside and starts fresh, with an event, rather than guess.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE IF NOT EXISTS meta(
               key TEXT PRIMARY KEY,
               value
           ) WITHOUT ROWID""",
        """CREATE TABLE cells(
               idx INTEGER PRIMARY KEY,
               id TEXT NOT NULL UNIQUE,
               source TEXT
           )""",
        # One row per reading; seq is the rig's idempotency key, assigned from meta.next_seq.readings.
        """CREATE TABLE readings(
               seq INTEGER PRIMARY KEY,
               ts_ms INTEGER NOT NULL,
               cell INTEGER NOT NULL,
               voltage_v REAL,
               current_a REAL,
               temperature_c REAL,
               flags INTEGER NOT NULL DEFAULT 0,
               sent INTEGER NOT NULL DEFAULT 0
           )""",
        "CREATE INDEX readings_unsent ON readings(seq) WHERE sent = 0",
        """CREATE TABLE events(
               seq INTEGER PRIMARY KEY,
               ts_ms INTEGER NOT NULL,
               kind TEXT NOT NULL,
               level TEXT NOT NULL,
               source TEXT NOT NULL,
               cell TEXT,
               message TEXT NOT NULL,
               data TEXT NOT NULL DEFAULT '{}',
               sent INTEGER NOT NULL DEFAULT 0
           )""",
        "CREATE INDEX events_unsent ON events(seq) WHERE sent = 0",
        # Per-cycle summaries and predictions; the JSON payload follows schemas/cycles.v1.json (one item).
        """CREATE TABLE cycles(
               seq INTEGER PRIMARY KEY,
               ts_ms INTEGER NOT NULL,
               cell TEXT NOT NULL,
               cycle INTEGER NOT NULL,
               payload TEXT NOT NULL,
               sent INTEGER NOT NULL DEFAULT 0
           )""",
        "CREATE INDEX cycles_unsent ON cycles(seq) WHERE sent = 0",
        "CREATE INDEX cycles_cell ON cycles(cell, cycle)",
    ],
    # 2: rows read from a cycler's file carry its own cycle and step numbers (NULL for other drivers), and the
    # ledger keeps, per test (cell and a hash of the file's head), the highest data row committed: the same file
    # read twice (followed, restarted, imported) adds nothing. Written in the readings' own transaction.
    2: [
        "ALTER TABLE readings ADD COLUMN cycle_no INTEGER",
        "ALTER TABLE readings ADD COLUMN step_no INTEGER",
        """CREATE TABLE import_ledger(
               key TEXT PRIMARY KEY,
               last_row INTEGER NOT NULL,
               rows INTEGER NOT NULL,
               last_ts_ms INTEGER NOT NULL
           ) WITHOUT ROWID""",
    ],
}

SCHEMA_VERSION = max(MIGRATIONS)

STREAMS = ("readings", "events", "cycles")


class SchemaTooNew(Exception):
    pass


def schema_version(conn: sqlite3.Connection) -> int:
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
    if not has_meta:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection) -> tuple[int, int]:
    """Apply pending migrations, each in its own transaction. Returns (from_version, to_version)."""
    start = schema_version(conn)
    if start > SCHEMA_VERSION:
        raise SchemaTooNew(f"database schema version {start} is newer than this agent's {SCHEMA_VERSION}")
    for version in range(start + 1, SCHEMA_VERSION + 1):
        with conn:
            for stmt in MIGRATIONS[version]:
                conn.execute(stmt)
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (version,))
            if version == 1:
                for stream in STREAMS:
                    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, 1)", (f"next_seq.{stream}",))
                conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('dropped_readings', 0)")
    return start, SCHEMA_VERSION
