"""Twin state from the store at start-up: cycle counters, capacity history, Qd(V) curves, last per-cycle values.

The twin keeps nothing of its own on disk: every completed cycle is already in the store's ``cycles`` table (one
JSON payload each, never deleted), so after a restart the twin reads back what its models need, with bounded
queries (``json_extract`` in SQLite, only the fields and cycles needed). A missing or unreadable database gives an
empty state; the agent's store handles corruption itself.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("agent.twin")


@dataclass
class CellState:
    last_cycle: int = 0
    last_ts: int = 0  # end of the last stored cycle = start of the one in progress
    history: dict[int, float] = field(default_factory=dict)  # cycle -> discharge Ah
    curves: dict[int, list[float]] = field(default_factory=dict)  # cycle -> Qd(V) for the cycle-life windows
    soh: float | None = None
    dcr: float | None = None
    ce: float | None = None
    cycle_life_done: bool = False


@dataclass
class OpenCycle:
    """A cycler-followed cell's test after a restart: the highest file row stored, the open cycle's rows."""

    key: str
    last_row: int
    rows: tuple[np.ndarray, ...] | None = None  # ts_ms, A, V, degC, cycle, step of the open cycle, in file order
    complete: bool = False  # the store holds its start (a row of an earlier cycle, or every row of the test)


def load(db_path: Path, history_cycles: int, curve_cycles: set[int], last_model_cycle: int) -> dict[str, CellState]:
    if not Path(db_path).exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        log.warning("twin: cannot read the store to restore state: %s", exc)
        return {}
    out: dict[str, CellState] = {}
    try:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='cycles'").fetchone():
            return {}
        for cell, last, ts in con.execute("SELECT cell, MAX(cycle), MAX(ts_ms) FROM cycles GROUP BY cell"):
            out[cell] = CellState(last_cycle=int(last), last_ts=int(ts), cycle_life_done=int(last) >= last_model_cycle)
        rows = con.execute(
            "SELECT c.cell, c.cycle, json_extract(c.payload, '$.discharge_ah'), json_extract(c.payload, '$.soh'), "
            "json_extract(c.payload, '$.dc_resistance_ohm'), json_extract(c.payload, '$.coulombic_efficiency'), "
            "json_extract(c.payload, '$.predicted_cycle_life') "
            "FROM cycles c JOIN (SELECT cell, MAX(cycle) AS m FROM cycles GROUP BY cell) l ON c.cell = l.cell "
            "WHERE c.cycle > l.m - ? OR c.cycle <= ? ORDER BY c.cell, c.seq",
            (history_cycles, last_model_cycle),
        )
        for cell, cycle, cap, soh, dcr, ce, life in rows:
            st = out[cell]
            if cap is not None:
                st.history[int(cycle)] = float(cap)
            st.soh = soh if soh is not None else st.soh
            st.dcr = dcr if dcr is not None else st.dcr
            st.ce = ce if ce is not None else st.ce
            st.cycle_life_done = st.cycle_life_done or life is not None
        if curve_cycles:
            marks = ",".join("?" * len(curve_cycles))
            for cell, cycle, qd in con.execute(
                f"SELECT cell, cycle, json_extract(payload, '$.qd_ah') FROM cycles WHERE cycle IN ({marks}) "
                "AND json_type(payload, '$.qd_ah') = 'array'",
                sorted(curve_cycles),
            ):
                found = out.get(cell)
                if found is not None and not found.cycle_life_done:
                    found.curves[int(cycle)] = json.loads(qd)
    except sqlite3.Error as exc:
        log.warning("twin: could not restore state from the store (%s); starting fresh", exc)
        return {}
    finally:
        con.close()
    log.info("twin: restored %d cells from the store", len(out))
    return out


def load_open_cycles(db_path: Path, only: set[str] | None = None, scan_rows: int = 5_000_000) -> dict[str, OpenCycle]:
    """Per cell followed from a cycler's file (``only`` these, when given): its latest test in the import ledger and
    the open cycle's rows, read back from the readings (newest first, at most ``scan_rows`` back) until a row of an
    earlier cycle."""
    if not Path(db_path).exists():
        return {}
    out: dict[str, OpenCycle] = {}
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        log.warning("twin: cannot read the store to restore cycler state: %s", exc)
        return {}
    try:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='import_ledger'").fetchone():
            return {}
        cells = dict(con.execute("SELECT id, idx FROM cells"))
        top = con.execute("SELECT MAX(seq) FROM readings").fetchone()[0] or 0
        newest: dict[str, tuple[str, int, int]] = {}  # the cell's latest test (ordered by time): one scan per cell
        for key, last_row, n_rows in con.execute("SELECT key, last_row, rows FROM import_ledger ORDER BY last_ts_ms"):
            cell = str(key).rpartition(":")[0]
            if cell in cells and (only is None or cell in only):
                newest[cell] = (str(key), int(last_row), int(n_rows))
        for cell, (key, last_row, n_rows) in newest.items():
            rows, complete = _open_rows(con, cells[cell], top - scan_rows, n_rows)
            out[cell] = OpenCycle(key, last_row, rows, complete)
    except sqlite3.Error as exc:
        log.warning("twin: could not restore cycler state from the store (%s)", exc)
        return {}
    finally:
        con.close()
    return out


def _open_rows(
    con: sqlite3.Connection, idx: int, floor: int, n_rows: int
) -> tuple[tuple[np.ndarray, ...] | None, bool]:
    """The open cycle's rows, and whether its start is in the store: a row of an earlier cycle precedes it, or
    its rows are all the test's rows (the ledger's count)."""
    cur = con.execute(
        "SELECT ts_ms, current_a, voltage_v, temperature_c, IFNULL(cycle_no, -1), IFNULL(step_no, -1) FROM readings "
        "WHERE cell=? AND seq > ? ORDER BY seq DESC",
        (idx, floor),
    )
    parts: list[np.ndarray] = []
    open_cycle = None
    earlier = False
    while chunk := cur.fetchmany(8192):
        a = np.array(chunk, dtype=np.float64)
        open_cycle = a[0, 4] if open_cycle is None else open_cycle
        other = np.flatnonzero(a[:, 4] != open_cycle)
        parts.append(a[: other[0]] if other.size else a)
        if other.size:
            earlier = True
            break
    if open_cycle is None or open_cycle < 0:
        return None, False
    rows = np.concatenate(parts)[::-1]
    cols = (rows[:, 0].astype(np.int64), rows[:, 1], rows[:, 2], rows[:, 3])
    return (*cols, rows[:, 4].astype(np.int64), rows[:, 5].astype(np.int64)), earlier or rows.shape[0] == n_rows
