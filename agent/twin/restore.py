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
