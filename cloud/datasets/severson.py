"""Severson-layout cycle-life data: a folder of ``cell<k>.csv`` Qdlin matrices and a file of cycle lives.

Each ``cell<k>.csv`` (no header) is [grid points x cycles 2..100] discharge capacity (Ah) on the descending
voltage grid; line k of the lives file is cell k's cycle life. This is the layout of
``../shared/data/severson2019/qdlin_cycles2to100`` and what ``battery-twin model evaluate cycle-life`` reads.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.features.cyclelife import FIRST_CYCLE, LAST_CYCLE

CELL_FILE = re.compile(r"^cell(\d+)\.csv$")


@dataclass
class QdlinSet:
    files: list[str]  # cell<k>.csv names, in k order
    qdlin: np.ndarray  # [cells, grid, 99]
    cycle_life: np.ndarray  # [cells]
    paths: list[Path]  # every file read (for the training-data hash)


def concat(sets: dict[str, QdlinSet]) -> QdlinSet:
    """Several splits as one set; files are named ``<split>/cell<k>.csv``."""
    return QdlinSet(
        [f"{name}/{f}" for name, d in sets.items() for f in d.files],
        np.concatenate([d.qdlin for d in sets.values()]),
        np.concatenate([d.cycle_life for d in sets.values()]),
        [p for d in sets.values() for p in d.paths],
    )


def default_data_dir() -> Path:
    """The shared real-data folder: $BATTERY_TWIN_DATA, else ../shared/data beside the project root."""
    env = os.environ.get("BATTERY_TWIN_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def severson_root(data_dir: Path | None = None) -> Path:
    return (data_dir or default_data_dir()) / "severson2019" / "qdlin_cycles2to100"


def split_paths(root: Path, split: str) -> tuple[Path, Path]:
    """(folder, lives file) of a split ('train', 'test1') in the shipped layout."""
    return root / split, root / "cycle_lives" / f"{split}_cycle_lives.csv"


def load_qdlin(folder: Path, lives_file: Path, exclude: tuple[str, ...] = ()) -> QdlinSet:
    """Read every cell<k>.csv of a folder (k = 1..N, no gaps) with the lives file; ``exclude`` drops files."""
    folder, lives_file = Path(folder), Path(lives_file)
    if not folder.is_dir():
        raise FileNotFoundError(f"Qdlin folder not found: {folder}")
    found = {int(m.group(1)): p for p in folder.iterdir() if (m := CELL_FILE.match(p.name))}
    if not found:
        raise FileNotFoundError(f"no cell<k>.csv files in {folder}")
    lives = np.loadtxt(lives_file, dtype=float, ndmin=1)
    ks = sorted(found)
    if ks != list(range(1, len(ks) + 1)) or len(ks) != lives.size:
        raise ValueError(
            f"{folder}: expected cell1.csv..cell{lives.size}.csv to match the {lives.size} lines of "
            f"{lives_file.name}, found cells {ks[:3]}..{ks[-3:]} ({len(ks)} files)"
        )
    unknown = set(exclude) - {found[k].name for k in ks}
    if unknown:
        raise ValueError(f"--exclude-file names no file of {folder}: {sorted(unknown)}")
    keep = [k for k in ks if found[k].name not in exclude]
    mats = []
    n_cycles = LAST_CYCLE - FIRST_CYCLE + 1
    for k in keep:
        m = np.loadtxt(found[k], delimiter=",", dtype=float, ndmin=2)
        if m.shape[1] != n_cycles:
            raise ValueError(
                f"{found[k]}: expected {n_cycles} columns (cycles {FIRST_CYCLE}..{LAST_CYCLE}), got {m.shape[1]}"
            )
        mats.append(m)
    if len({m.shape for m in mats}) != 1:
        raise ValueError(f"{folder}: matrices differ in shape")
    return QdlinSet(
        [found[k].name for k in keep],
        np.stack(mats),
        lives[[k - 1 for k in keep]],
        [found[k] for k in ks] + [lives_file],
    )


POLICY_TABLE = "severson_et_al_SI_table9.csv"
_TABLE_SPLITS = {"train": "Train", "test1": "Prim. Test"}


@dataclass
class CellPolicies:
    policy: list[str]  # charging policy of each cell, in cell order (cell1, cell2, ...)
    batch: list[str]  # batch date of each cell


def policy_table(root: Path) -> Path | None:
    """Severson's SI table 9 in ``root`` (e.g. a SageMaker channel) or beside it (the shared data layout)."""
    for p in (Path(root) / POLICY_TABLE, Path(root).parent / POLICY_TABLE):
        if p.is_file():
            return p
    return None


def known_policies(folder: Path, lives: np.ndarray) -> list[str] | None:
    """The charging policies of a shipped split's cells (``folder`` = <root>/train or <root>/test1) when the
    table is there and matches its lives; None otherwise (a lab's own cells: group them with --groups)."""
    folder = Path(folder)
    if folder.name not in _TABLE_SPLITS or policy_table(folder.parent) is None:
        return None
    try:
        return split_policies(folder.parent, folder.name, lives).policy
    except ValueError:
        return None


def split_policies(root: Path, split: str, lives: np.ndarray) -> CellPolicies:
    """Charging policy and batch of each cell of a shipped split, from Severson's SI table 9 (beside ``root``).

    The table lists the cells of each split in cell order; the cycle lives are checked against it, so a reordered
    or foreign split is refused instead of being grouped wrongly.
    """
    if split not in _TABLE_SPLITS:
        raise ValueError(f"no charging policies for split {split!r} (known: {', '.join(_TABLE_SPLITS)})")
    path = policy_table(root)
    if path is None:
        raise FileNotFoundError(f"{POLICY_TABLE} not found in {root} or beside it")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["Dataset"] == _TABLE_SPLITS[split]]
    table_lives = np.array([float(r["Cycle life"]) for r in rows])
    if table_lives.shape != np.shape(lives) or not np.array_equal(table_lives, np.asarray(lives, dtype=float)):
        raise ValueError(f"{path.name}: the {split} rows do not match the {np.size(lives)} cycle lives of the split")
    return CellPolicies([r["Charging policy"] for r in rows], [r["Batch date"] for r in rows])


def read_groups(path: Path, n_cells: int) -> list[str]:
    """Group labels, one per line (line k = cell<k>), e.g. the charging policy of each cell."""
    labels = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if len(labels) != n_cells:
        raise ValueError(f"{path}: {len(labels)} group labels for {n_cells} cells (one per line, line k = cell<k>)")
    return labels
