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

from agent.features import soh as soh_features

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
    """Read a capacity CSV; rows are grouped by cell (first-seen order) and sorted by cycle.

    Real files are not clean, and none of this is an error: a cycle measured twice (a checkpoint repeated) is one
    point, the mean of the two; a row whose capacity is empty, not finite or not positive is dropped; outliers are
    dropped by the robust filter of ``agent.features.soh`` (the forecaster's own). What was dropped or combined is
    counted per cell in ``meta["cleaning"]``. A cycle or capacity that is not a number is an error naming the line.
    """
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
        rows: dict[str, list[tuple[float, float, float]]] = {}
        for line, r in enumerate(reader, start=2):
            try:
                t = float(r["temperature_c"]) if has_t and r["temperature_c"] not in ("", None) else np.nan
                cap = float(r["capacity_ah"]) if r["capacity_ah"] not in ("", None) else np.nan
                cycle = float(r["cycle"])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{line}: {exc}") from None
            if not np.isfinite(cycle) or cycle != int(cycle):
                raise ValueError(f"{path}:{line}: cycle {r['cycle']!r} is not a whole number")
            if not r["cell"]:
                raise ValueError(f"{path}:{line}: empty cell name")
            rows.setdefault(r["cell"], []).append((cycle, cap, t))
    try:
        out = [_clean(cell, np.array(items, dtype=float), has_t) for cell, items in rows.items()]
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not out:
        raise ValueError(f"{path}: no rows")
    return out


def _clean(cell: str, a: np.ndarray, has_t: bool) -> CapacityHistory:
    """One cell's rows [cycle, capacity, temperature] -> a history with repeats combined and outliers dropped."""
    bad = ~(np.isfinite(a[:, 1]) & (a[:, 1] > 0))
    if bad.all():
        raise ValueError(f"cell {cell}: no usable capacity value in its {bad.size} row(s)")
    a = a[~bad]
    cycles, inverse = np.unique(a[:, 0], return_inverse=True)
    counts = np.bincount(inverse, minlength=cycles.size)
    cap = np.bincount(inverse, a[:, 1], cycles.size) / np.maximum(counts, 1)
    temp = None
    if has_t:
        tv = np.where(np.isfinite(a[:, 2]), a[:, 2], 0.0)
        tn = np.bincount(inverse, np.isfinite(a[:, 2]).astype(float), cycles.size)
        temp = np.where(tn > 0, np.bincount(inverse, tv, cycles.size) / np.maximum(tn, 1), np.nan)
    prep = soh_features.prepare(cycles[None, :], cap[None, :], max(cycles.size, 1))
    kept = np.isin(cycles, prep.cycle[0][prep.valid[0]])
    cleaning = {
        "rows": int(bad.size),
        "not_a_capacity": int(bad.sum()),
        "repeats_combined": int((counts - 1).clip(min=0).sum()),
        "outliers": int(prep.outliers[0]),
    }
    return CapacityHistory(
        cell,
        cycles[kept].astype(int),
        cap[kept],
        temp[kept] if temp is not None else None,
        {"cleaning": cleaning},
    )


def cleaning_summary(histories: list[CapacityHistory]) -> dict[str, object]:
    """Totals and per-cell counts of what the reader combined or dropped (empty for histories built otherwise)."""
    per = {h.cell: h.meta["cleaning"] for h in histories if "cleaning" in h.meta}
    keys = ("rows", "not_a_capacity", "repeats_combined", "outliers")
    return {**{k: sum(int(c[k]) for c in per.values()) for k in keys}, "cells": per}


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
