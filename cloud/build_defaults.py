"""Build the models the agent ships (``agent/models``) from the shared real data, with fixed seeds.

cycle_life: trained on the Severson train split, scored on the primary test split (test1 without cell22.csv, the
paper's convention) in the same run. soh: trained on all four NASA PCoE cells, with the leave-one-cell-out
figures from the half-life point recorded (EOL at 70% of 2 Ah, NASA's own criterion).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from cloud.datasets.capacity import from_nasa
from cloud.datasets.severson import default_data_dir, split_paths
from cloud.train import train_cycle_life, train_soh

SEED = 0
SEVERSON_EXCLUDE = ("cell22.csv",)
NASA_NOMINAL_AH = 2.0
NASA_EOL_FRACTION = 0.7


def models_dir() -> Path:
    return Path(str(resources.files("agent.models")))


def build(
    out: Path | None = None, report_dir: Path | None = None, data_dir: Path | None = None
) -> list[dict[str, Any]]:
    out = Path(out) if out else models_dir()
    report_dir = Path(report_dir) if report_dir else Path(__file__).resolve().parent / "reports"
    data = Path(data_dir) if data_dir else default_data_dir()
    root = data / "severson2019" / "qdlin_cycles2to100"
    tr_dir, tr_lives = split_paths(root, "train")
    te_dir, te_lives = split_paths(root, "test1")
    cl = train_cycle_life(tr_dir, tr_lives, out, "cycle_life", SEED, te_dir, te_lives, SEVERSON_EXCLUDE, report_dir)
    nasa = from_nasa(data / "nasa_pcoe" / "capacity_per_cycle")
    sh = train_soh(
        nasa,
        out,
        "soh",
        SEED,
        [Path(c.meta["source"]) for c in nasa],
        NASA_NOMINAL_AH,
        NASA_EOL_FRACTION,
        0.5,
        report_dir,
    )
    return [cl, sh]
