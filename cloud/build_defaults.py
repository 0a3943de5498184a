"""Build the models the agent ships (``agent/models``) from the shared real data, with fixed seeds.

cycle_life: trained on the Severson train split, scored on the primary test split (test1 without cell22.csv, the
paper's convention) in the same run. soh: reference trajectories of 12 of the 48 Baumhoefer cells (NMC, knees;
spanning their end-of-life ranks) and the four NASA PCoE cells (LCO, no knee), each as a fraction of its nominal
capacity, with the rate left free (the twin meets cells of any type). The recorded leave-one-cell-out figures are
those of ``evaluate soh`` on all 48 Baumhoefer cells (EOL at 80 % of 1.85 Ah, the issue's criterion) and on the NASA
cells (EOL at 70 % of 2 Ah, NASA's own criterion), each fold a sister-cell model of the others.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from cloud import evaluate, plots
from cloud.datasets.capacity import CapacityHistory, from_nasa, read_capacity_csv
from cloud.datasets.severson import default_data_dir, split_paths
from cloud.evaluate import first_crossing
from cloud.train import loo_summary, train_cycle_life, train_soh, write_report

SEED = 0
SEVERSON_EXCLUDE = ("cell22.csv",)
NASA_NOMINAL_AH = 2.0
NASA_EOL_FRACTION = 0.7
BAUMHOFER_NOMINAL_AH = 1.85
BAUMHOFER_EOL_FRACTION = 0.8
SHIPPED_BAUMHOFER_CELLS = 12


def shipped_baumhofer(cells: list[CapacityHistory], n: int = SHIPPED_BAUMHOFER_CELLS) -> list[CapacityHistory]:
    """The Baumhoefer cells the shipped model carries: ``n`` at evenly spaced ranks of their end-of-life cycle
    (80 % of nominal), so the knees they show span the population's, at a quarter of the edge cost of all 48."""
    eol = [first_crossing(c.cycle, c.capacity_ah, BAUMHOFER_EOL_FRACTION * BAUMHOFER_NOMINAL_AH) for c in cells]
    order = sorted(range(len(cells)), key=lambda i: (eol[i] if eol[i] is not None else np.inf, cells[i].cell))
    picks = np.unique(np.round(np.linspace(0, len(order) - 1, min(n, len(order)))).astype(int))
    return [cells[order[i]] for i in picks]


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
    baum_csv = data / "baumhofer2014" / "capacity_checkpoints.csv"
    baum = read_capacity_csv(baum_csv)
    nominal = {**{c.cell: BAUMHOFER_NOMINAL_AH for c in baum}, **{c.cell: NASA_NOMINAL_AH for c in nasa}}
    nasa_report = evaluate.evaluate_soh(nasa, NASA_NOMINAL_AH, NASA_EOL_FRACTION, 0.5)
    write_report(nasa_report, Path(report_dir), "soh_nasa_evaluation", plots.soh)
    sh = train_soh(
        shipped_baumhofer(baum) + nasa,
        out,
        "soh",
        SEED,
        [baum_csv, *(Path(c.meta["source"]) for c in nasa)],
        nominal,
        BAUMHOFER_EOL_FRACTION,
        0.5,
        report_dir,
        coarse=True,
        evaluate_on=baum,
        evaluate_nominal_ah=BAUMHOFER_NOMINAL_AH,
        extra_metrics={"nasa_leave_one_cell_out": loo_summary(nasa_report)},
    )
    return [cl, sh]
