"""Capacity-per-cycle tables: ``cell,cycle,capacity_ah[,temperature_c]`` CSV, and builders for it.

Builders: the NASA PCoE per-cell files (``../shared/data/nasa_pcoe/capacity_per_cycle/B00xx.csv``) and the
agent's SQLite store (the ``cycles`` table the twin fills), so the SOH model trains on lab data the same way.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COLUMNS = ("cell", "cycle", "capacity_ah")
OPTIONAL = ("temperature_c",)


@dataclass
class CapacityHistory:
    cell: str
    cycle: np.ndarray  # int, increasing
    capacity_ah: np.ndarray
    temperature_c: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.cycle.size)


def read_capacity_csv(path: Path) -> list[CapacityHistory]:
    """Read a capacity CSV; rows are grouped by cell (first-seen order) and sorted by cycle."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {missing}; expected {','.join(COLUMNS)}"
                f"[,{','.join(OPTIONAL)}], got {reader.fieldnames}"
            )
        has_t = "temperature_c" in (reader.fieldnames or [])
        rows: dict[str, list[tuple[int, float, float]]] = {}
        for line, r in enumerate(reader, start=2):
            try:
                t = float(r["temperature_c"]) if has_t and r["temperature_c"] not in ("", None) else np.nan
                rows.setdefault(r["cell"], []).append((int(r["cycle"]), float(r["capacity_ah"]), t))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{line}: {exc}") from None
    out = []
    for cell, items in rows.items():
        items.sort()
        a = np.array(items, dtype=float)
        cycles = a[:, 0].astype(int)
        if np.any(np.diff(cycles) <= 0):
            raise ValueError(f"{path}: cell {cell} has repeated cycle numbers")
        out.append(CapacityHistory(cell, cycles, a[:, 1], a[:, 2] if has_t else None))
    if not out:
        raise ValueError(f"{path}: no rows")
    return out


def write_capacity_csv(path: Path, histories: list[CapacityHistory]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    has_t = any(h.temperature_c is not None for h in histories)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([*COLUMNS, *(OPTIONAL if has_t else ())])
        for h in histories:
            for i in range(len(h)):
                row = [h.cell, int(h.cycle[i]), repr(float(h.capacity_ah[i]))]
                if has_t:
                    t = h.temperature_c[i] if h.temperature_c is not None else np.nan
                    row.append("" if not np.isfinite(t) else repr(float(t)))
                w.writerow(row)


def from_nasa(folder: Path, cells: tuple[str, ...] = ("B0005", "B0006", "B0007", "B0018")) -> list[CapacityHistory]:
    """NASA PCoE capacity_per_cycle/B00xx.csv (discharge, ..., temperature, ..., capacity): one history per cell.

    ``temperature`` there is the maximum temperature during the discharge (SOURCE.txt).
    """
    out = []
    for cell in cells:
        p = Path(folder) / f"{cell}.csv"
        with p.open(newline="") as f:
            rows = list(csv.DictReader(f))
        out.append(
            CapacityHistory(
                cell,
                np.array([int(r["discharge"]) for r in rows]),
                np.array([float(r["capacity"]) for r in rows]),
                np.array([float(r["temperature"]) for r in rows]),
                {"source": str(p)},
            )
        )
    return out


def from_store(db_path: Path) -> list[CapacityHistory]:
    """Per-cycle discharge capacity from the agent's store (``cycles`` table, one JSON payload per cycle)."""
    con = sqlite3.connect(f"file:{Path(db_path)}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT cell, cycle, json_extract(payload, '$.discharge_ah'), "
            "json_extract(payload, '$.temperature_max_c') FROM cycles ORDER BY cell, cycle"
        ).fetchall()
    finally:
        con.close()
    by_cell: dict[str, list[tuple[int, float, float]]] = {}
    for cell, cycle, cap, temp in rows:
        if cap is None:
            continue
        by_cell.setdefault(cell, []).append((int(cycle), float(cap), np.nan if temp is None else float(temp)))
    out = []
    for cell, items in by_cell.items():
        dedup = {c: (q, t) for c, q, t in items}  # a cycle stored twice: keep the last
        cyc = np.array(sorted(dedup))
        out.append(
            CapacityHistory(cell, cyc, np.array([dedup[c][0] for c in cyc]), np.array([dedup[c][1] for c in cyc]))
        )
    return out


def to_json_summary(histories: list[CapacityHistory]) -> str:
    return json.dumps({h.cell: len(h) for h in histories})
