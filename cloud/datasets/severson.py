"""Severson-layout cycle-life data: a folder of ``cell<k>.csv`` Qdlin matrices and a file of cycle lives.

Each ``cell<k>.csv`` (no header) is [grid points x cycles 2..100] discharge capacity (Ah) on the descending
voltage grid; line k of the lives file is cell k's cycle life. This is the layout of
``../shared/data/severson2019/qdlin_cycles2to100`` and what ``battery-twin model evaluate cycle-life`` reads.
"""

from __future__ import annotations

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
