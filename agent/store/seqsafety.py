"""Keeping ``seq`` unique for ever, even when the database itself is lost or rewound.

The counters live in ``meta`` and advance in the same transaction as the rows. Two things can still take a store
back in time: a quarantine (the database is unusable and a fresh one starts) and a rewind (committed transactions
lost to a torn WAL or a disk that lied about fsync). Seqs handed out before may already be at the broker, so in
both cases the counters jump forward past every source we have: the old database's meta if readable, a hint file
written beside the database at every maintenance and at close (plus a margin for the readings since), and
``unix_ms * 1000`` (enough on its own as long as the clock is right).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path

from agent.store.schema import STREAMS
from drivers.base import Event

log = logging.getLogger("agent.store")

HINT_MARGIN = 10_000_000  # readings that may have been committed after the hint was written


class SeqSafetyMixin:
    path: Path
    conn: sqlite3.Connection | None
    last_seq: dict[str, int]

    @property
    def _hint_path(self) -> Path:
        return Path(str(self.path) + ".seq")

    def _load_last_seq(self) -> None:
        for stream in STREAMS:
            self.last_seq[stream] = int(self.meta(f"next_seq.{stream}", 1)) - 1  # type: ignore[attr-defined]

    def write_seq_hint(self) -> None:
        """Remember the seq counters beside the database (at maintenance and close)."""
        try:
            tmp = self._hint_path.with_suffix(".seq.tmp")
            tmp.write_text(json.dumps({s: v + 1 for s, v in self.last_seq.items()}))
            os.replace(tmp, self._hint_path)
        except OSError as exc:
            log.debug("seq hint not written: %s", exc)

    def _raise_seq_floor(self, old_db: Path) -> None:
        floors = {s: self.clock_ms() * 1000 for s in STREAMS}  # type: ignore[attr-defined]
        try:
            old = sqlite3.connect(f"file:{old_db}?mode=ro", uri=True)
            for key, value in old.execute("SELECT key, value FROM meta WHERE key LIKE 'next_seq.%'"):
                stream = key.removeprefix("next_seq.")
                if stream in floors:
                    floors[stream] = max(floors[stream], int(value))
            old.close()
        except (sqlite3.Error, ValueError, TypeError):
            pass
        try:
            for stream, value in json.loads(self._hint_path.read_text()).items():
                if stream in floors:
                    floors[stream] = max(floors[stream], int(value) + HINT_MARGIN)
        except (OSError, ValueError, TypeError, AttributeError):
            pass
        with self.conn:  # type: ignore[union-attr]
            self.conn.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            for stream, floor in floors.items():
                self.conn.execute(
                    "UPDATE meta SET value = max(value, ?) WHERE key = ?",  # type: ignore[union-attr]
                    (floor, f"next_seq.{stream}"),
                )
        self._load_last_seq()

    def _check_rewound(self) -> Event | None:
        """A database behind its own seq hint lost committed transactions: jump forward, raise an event."""
        try:
            hint = json.loads(self._hint_path.read_text())
        except (OSError, ValueError):
            return None
        behind = {
            s: int(v) - 1 - self.last_seq[s]
            for s, v in hint.items()
            if s in self.last_seq and isinstance(v, int) and int(v) - 1 > self.last_seq[s]
        }
        if not behind:
            return None
        self._raise_seq_floor(self.path)
        return Event(
            "store.rewound",
            f"the store is behind its seq hint by {behind}: committed data was lost "
            "(torn WAL or a disk that lied about fsync); seq jumps forward so no seq is reused",
            level="critical",
            source="store",
            ts_ms=self.clock_ms(),  # type: ignore[attr-defined]
            data={"behind": behind},
        )
