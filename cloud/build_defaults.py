"""Build the models the agent ships (``agent/models``) from the shared real data, with fixed seeds.

cycle_life: the rule of ``cloud.cyclelife_select`` (cross-validation grouped by the charging policies of
Severson's SI table 9) run on the train split alone: it chooses the
ensemble, and that train-only fit, scored on the primary test split (test1 without cell22.csv, the paper's
convention), gives the honest primary-test figure and the evaluation report. The shipped model is the same
ensemble refit on train + test1 (without cell22.csv), its interval from the grouped folds of those 83 cells: more
cells for the coefficients, no second choice (docs/models.md says why). Its metadata carries the train-only
figures.
soh: reference trajectories of 12 of the 48 Baumhoefer cells (NMC, knees;
spanning their end-of-life ranks) and the four NASA PCoE cells (LCO, no knee), each as a fraction of its nominal
capacity, with the usual prior on the fitted rate (leaving it free lost on every validation column: docs/models.md). The recorded leave-one-cell-out figures are
those of ``evaluate soh`` on all 48 Baumhoefer cells (EOL at 80 % of 1.85 Ah, the issue's criterion) and on the NASA
cells (EOL at 70 % of 2 Ah, NASA's own criterion), each fold a sister-cell model of the others.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from cloud import evaluate, plots
from cloud.datasets.capacity import CapacityHistory, from_nasa, read_capacity_csv
from cloud.datasets.severson import default_data_dir, split_paths, split_policies
from cloud.evaluate import first_crossing
from cloud.train import loo_summary, train_cycle_life, train_cycle_life_pooled, train_soh, write_report

SEED = 0
SEVERSON_EXCLUDE = ("cell22.csv",)
CHOICE_KEYS = ("rule", "grouping", "n_groups", "cv", "best_single", "threshold_cycles", "members")
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
    cl = build_cycle_life(data / "severson2019" / "qdlin_cycles2to100", out, report_dir)
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


def build_cycle_life(root: Path, out: Path, report_dir: Path) -> dict[str, Any]:
    splits = {k: split_paths(root, k) for k in ("train", "test1")}
    lives = {k: np.loadtxt(v[1], ndmin=1) for k, v in splits.items()}
    policies = {k: split_policies(root, k, lives[k]).policy for k in splits}
    keep = [f"cell{k}.csv" not in SEVERSON_EXCLUDE for k in range(1, len(policies["test1"]) + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        honest = train_cycle_life(
            *splits["train"],
            Path(tmp),
            "cycle_life",
            SEED,
            *splits["test1"],
            SEVERSON_EXCLUDE,
            report_dir,
            groups=policies["train"],
        )
    m = honest["metrics"]
    train_only = {
        "version": honest["version"],
        "n_train_cells": m["n_train_cells"],
        "members": len(honest["hyperparameters"]["members"]),
        **{k: v for k, v in m.items() if k.startswith(("test_", "baseline_variance_test", "cv_"))},
    }
    return train_cycle_life_pooled(
        {
            "train": (*splits["train"], (), policies["train"]),
            "test1": (*splits["test1"], SEVERSON_EXCLUDE, [p for p, k in zip(policies["test1"], keep) if k]),
        },
        out,
        "cycle_life",
        SEED,
        chosen={k: v for k, v in honest["hyperparameters"].items() if k in CHOICE_KEYS}
        | {"table": honest["selection_table"]},
        extra_metrics={"primary_test_from_train_only_fit": train_only},
    )
