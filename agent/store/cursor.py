"""The cursor over unsent rows, and the acker that marks rows sent once the broker has acknowledged them.

Both are stateless beyond their connection: the uplink keeps its own position (the seq after which it looks)
and hands it in, so a restart simply starts again from the oldest unsent row. Reads are bounded (``LIMIT``) and
ride on the partial ``*_unsent`` indexes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.store.db import Db
from agent.store.schema import STREAMS

READING_COLS = "seq, ts_ms, cell, voltage_v, current_a, temperature_c, flags, IFNULL(cycle_no, -1), IFNULL(step_no, -1)"


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
    cycle_no: np.ndarray | None = None  # int64, the cycler's cycle number, -1 where the row has none
    step_no: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    def head(self, n: int) -> ReadingRows:
        return ReadingRows(
            self.seq[:n],
            self.ts_ms[:n],
            self.cell[:n],
            self.voltage_v[:n],
            self.current_a[:n],
            self.temperature_c[:n],
            self.flags[:n],
            None if self.cycle_no is None else self.cycle_no[:n],
            None if self.step_no is None else self.step_no[:n],
        )

    @classmethod
    def empty(cls) -> ReadingRows:
        z = np.zeros(0, np.int64)
        zf = np.zeros(0)
        return cls(z, z, z, zf, zf, zf, z)


def _range(after_seq: int, upto_seq: int | None) -> tuple[str, list[Any]]:
    where, args = "sent = 0 AND seq > ?", [after_seq]
    if upto_seq is not None:
        where += " AND seq <= ?"
        args.append(upto_seq)
    return where, args


class UnsentCursor:
    def __init__(self, db: Db):
        self.db = db

    def readings(self, after_seq: int = 0, limit: int = 10_000, upto_seq: int | None = None) -> ReadingRows:
        where, args = _range(after_seq, upto_seq)
        rows = self.db.conn.execute(
            f"SELECT {READING_COLS} FROM readings WHERE {where} ORDER BY seq LIMIT ?", [*args, limit]
        ).fetchall()
        if not rows:
            return ReadingRows.empty()
        a = np.array(rows, dtype=np.float64)  # NULL -> NaN; integers here are exact below 2**53
        return ReadingRows(
            a[:, 0].astype(np.int64),
            a[:, 1].astype(np.int64),
            a[:, 2].astype(np.int64),
            a[:, 3],
            a[:, 4],
            a[:, 5],
            a[:, 6].astype(np.int64),
            a[:, 7].astype(np.int64),
            a[:, 8].astype(np.int64),
        )

    def events(self, after_seq: int = 0, limit: int = 500, upto_seq: int | None = None) -> list[dict[str, Any]]:
        where, args = _range(after_seq, upto_seq)
        rows = self.db.conn.execute(
            f"SELECT seq, ts_ms, kind, level, source, cell, message, data FROM events WHERE {where} "
            "ORDER BY seq LIMIT ?",
            [*args, limit],
        ).fetchall()
        keys = ("seq", "ts", "kind", "level", "source", "cell", "message")
        return [{**dict(zip(keys, r[:7])), "data": json.loads(r[7])} for r in rows]

    def cycles(self, after_seq: int = 0, limit: int = 200, upto_seq: int | None = None) -> list[dict[str, Any]]:
        where, args = _range(after_seq, upto_seq)
        rows = self.db.conn.execute(
            f"SELECT seq, payload FROM cycles WHERE {where} ORDER BY seq LIMIT ?", [*args, limit]
        ).fetchall()
        return [{**json.loads(p), "seq": s} for s, p in rows]


class Acker:
    def __init__(self, db: Db):
        self.db = db

    def mark_sent(self, stream: str, ranges: Iterable[tuple[int, int]]) -> None:
        """Mark rows acknowledged by the broker (inclusive seq ranges), all in one transaction."""
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}")
        ranges = list(ranges)
        if not ranges:
            return
        conn = self.db.conn
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(f"UPDATE {stream} SET sent=1 WHERE seq BETWEEN ? AND ? AND sent=0", ranges)
