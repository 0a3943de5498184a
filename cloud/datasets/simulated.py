"""Simulated fleets as training data: a ``battery-twin simulate`` output folder -> capacity CSV and Qdlin layout.

``battery-twin simulate`` writes ``cycles.{csv,parquet}`` (per-cycle summaries), ``qv.{csv,parquet}`` (Qd(V) per
cell and cycle on a voltage grid) and ``meta.json`` (cycle life per cell). These builders turn them into the two
formats the models train and evaluate on: the capacity table (SOH) and the Severson Qdlin layout (cycle life,
cells whose Qd(V) covers cycles 2..100 and who reached end of life).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from agent.features.cyclelife import FIRST_CYCLE, LAST_CYCLE
from cloud.datasets.capacity import CapacityHistory


def read_table(folder: Path, name: str) -> dict[str, np.ndarray]:
    """Columns of ``<folder>/<name>.parquet`` or ``.csv`` (the cell column as strings)."""
    folder = Path(folder)
    pq_path, csv_path = folder / f"{name}.parquet", folder / f"{name}.csv"
    if pq_path.exists():
        import pyarrow.parquet as pq

        table = pq.read_table(pq_path)
        return {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
    if csv_path.exists():
        with csv_path.open(newline="") as f:
            rows = list(csv.reader(f))
        head, body = rows[0], rows[1:]
        cols = list(zip(*body)) if body else [[] for _ in head]
        return {
            h: (np.array(c, dtype=object).astype(str) if h == "cell" else np.array(c, dtype=float))
            for h, c in zip(head, cols)
        }
    raise FileNotFoundError(f"no {name}.parquet or {name}.csv in {folder} (a `battery-twin simulate` output)")


def capacity_histories(folder: Path) -> list[CapacityHistory]:
    t = read_table(folder, "cycles")
    out = []
    for cell in dict.fromkeys(t["cell"].tolist()):
        m = t["cell"] == cell
        order = np.argsort(t["cycle"][m])
        out.append(
            CapacityHistory(
                str(cell),
                t["cycle"][m][order].astype(int),
                t["discharge_ah"][m][order],
                t["temperature_max_c"][m][order] if "temperature_max_c" in t else None,
                {"source": str(folder)},
            )
        )
    return out


def write_qdlin(folder: Path, out: Path, split: str = "sim") -> tuple[Path, Path, list[str]]:
    """Severson layout under ``out``: ``<split>/cell<k>.csv`` and ``cycle_lives/<split>_cycle_lives.csv``.

    Only cells with Qd(V) for every cycle 2..100 and a cycle life in meta.json are written (k in cell order).
    Returns (folder, lives file, the cell ids written).
    """
    folder, out = Path(folder), Path(out)
    meta = json.loads((folder / "meta.json").read_text())
    life = dict(zip(meta["cell_ids"], meta["cycle_life"]))
    qv = read_table(folder, "qv")
    q_cols = [c for c in qv if c.startswith("q_ah_at_")]
    grid = np.array([float(c.removeprefix("q_ah_at_")) for c in q_cols])
    if grid.size < 2 or not np.all(np.diff(grid) < 0):
        raise ValueError(f"{folder}: qv columns are not a descending voltage grid")
    q = np.column_stack([qv[c] for c in q_cols])
    need = np.arange(FIRST_CYCLE, LAST_CYCLE + 1)
    (out / split).mkdir(parents=True, exist_ok=True)
    (out / "cycle_lives").mkdir(parents=True, exist_ok=True)
    written, lives = [], []
    for cell in meta["cell_ids"]:
        m = qv["cell"] == cell
        cycles = qv["cycle"][m].astype(int)
        if life.get(cell, -1) <= 0 or not np.isin(need, cycles).all():
            continue
        rows = {c: i for i, c in zip(np.nonzero(m)[0], cycles)}
        mat = np.column_stack([q[rows[c]] for c in need])  # [grid, 99]
        written.append(cell)
        lives.append(int(life[cell]))
        np.savetxt(out / split / f"cell{len(written)}.csv", mat, delimiter=",", fmt="%.6g")
    lives_file = out / "cycle_lives" / f"{split}_cycle_lives.csv"
    lives_file.write_text("".join(f"{v}\n" for v in lives))
    return out / split, lives_file, written
