"""Training runs shared by ``battery-twin model train``, ``build-defaults`` and the SageMaker entry points.

Each run trains on the training data only, exports ONNX + metadata, evaluates what it can in the same run
(held-out split for cycle life, leave-one-cell-out for SOH), records the figures in the metadata, and writes
the evaluation JSON and PNG plots beside the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cloud import cyclelife, evaluate, plots, soh
from cloud.datasets.capacity import CapacityHistory, cleaning_summary
from cloud.datasets.severson import QdlinSet, concat, load_qdlin
from cloud.onnx_export import sha256_files


def train_cycle_life(
    train_dir: Path,
    train_lives: Path,
    out_dir: Path,
    name: str = "cycle_life",
    seed: int = 0,
    test_dir: Path | None = None,
    test_lives: Path | None = None,
    exclude: tuple[str, ...] = (),
    report_dir: Path | None = None,
    groups: list[str] | None = None,
) -> dict[str, Any]:
    """Select and fit on the training split (``groups``: one label per training cell, e.g. its charging policy),
    export, and score the test split in the same run (point and interval, through the exported ONNX graph)."""
    train = load_qdlin(train_dir, train_lives)
    model = cyclelife.train(train, groups, seed=seed)
    baseline = cyclelife.train_baseline(train)
    training = {**split_record(train_dir, train_lives, train), "seed": seed}
    extra = _baseline_metrics(baseline)
    test = None
    if test_dir is not None and test_lives is not None:
        test = load_qdlin(test_dir, test_lives, exclude)
        extra.update(split_metrics(model, baseline, test, Path(test_dir).name, exclude))
    meta = cyclelife.export(model, out_dir, name, training, extra_metrics=extra)
    if test is not None:
        report = evaluate.evaluate_cycle_life(Path(out_dir) / f"{name}.onnx", test, train)
        write_report(report, report_dir or out_dir, f"{name}_evaluation", plots.cycle_life)
    return meta


def train_cycle_life_pooled(
    splits: dict[str, tuple[Path, Path, tuple[str, ...], list[str]]],
    out_dir: Path,
    name: str = "cycle_life",
    seed: int = 0,
    chosen: dict[str, Any] | None = None,
    extra_metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit on several splits at once: ``splits`` maps a split name to (folder, lives file, files to leave out,
    group label of each kept cell). ``chosen``: the selection of a model trained on a training split alone, whose
    members are refit here (None: the rule chooses again on all the cells). Nothing is held out here: the caller
    reports held-out figures from a fit that left them out (``extra_metrics``)."""
    sets = {k: load_qdlin(folder, lives, excl) for k, (folder, lives, excl, _) in splits.items()}
    data = concat(sets)
    groups = [g for _, _, _, labels in splits.values() for g in labels]
    model = cyclelife.train(data, groups, seed=seed, chosen=chosen)
    training = {
        "splits": [
            {**split_record(folder, lives, sets[k]), "excluded": list(excl)}
            for k, (folder, lives, excl, _) in splits.items()
        ],
        "n_cells": int(data.cycle_life.size),
        "sha256": sha256_files(data.paths),
        "seed": seed,
    }
    extra = {**_baseline_metrics(cyclelife.train_baseline(data)), **(extra_metrics or {})}
    return cyclelife.export(model, out_dir, name, training, extra_metrics=extra)


def split_record(folder: Path, lives: Path, data: QdlinSet) -> dict[str, Any]:
    """What a model was trained on, with the hash ``evaluate`` compares a scored split against."""
    return {
        "source": "/".join(Path(folder).resolve().parts[-3:]),
        "lives_file": Path(lives).name,
        "n_cells": int(data.cycle_life.size),
        "sha256": sha256_files(data.paths),
    }


def _baseline_metrics(baseline: cyclelife.BaselineModel) -> dict[str, Any]:
    return {
        "baseline_variance_train_rmse_cycles": baseline.metrics["train_rmse_cycles"],
        "baseline_variance_loo_rmse_cycles": baseline.metrics["loo_rmse_cycles"],
    }


def split_metrics(
    model: cyclelife.CycleLifeModel,
    baseline: cyclelife.BaselineModel,
    test: QdlinSet,
    split: str,
    exclude: tuple[str, ...],
) -> dict[str, Any]:
    """The test split's figures of a fitted model (numpy side; the ONNX side is scored by ``evaluate``)."""
    x = model.features(test)
    pred = model.predict(x)
    lo, hi = model.interval(x)
    bx = cyclelife.features(test, baseline.spec, baseline.feature_names)
    return {
        "test_split": split,
        "test_excluded": list(exclude),
        "test_n_cells": int(test.cycle_life.size),
        "test_rmse_cycles": cyclelife.rmse(pred, test.cycle_life),
        "test_mape_pct": cyclelife.mape_pct(pred, test.cycle_life),
        "test_interval_coverage": cyclelife.coverage(lo, hi, test.cycle_life),
        "baseline_variance_test_rmse_cycles": cyclelife.rmse(baseline.predict(bx), test.cycle_life),
        "baseline_variance_test_mape_pct": cyclelife.mape_pct(baseline.predict(bx), test.cycle_life),
    }


def train_soh(
    histories: list[CapacityHistory],
    out_dir: Path,
    name: str = "soh",
    seed: int = 0,
    source_files: list[Path] | None = None,
    nominal_ah: float | dict[str, float] = 1.0,
    eol_fraction: float = 0.8,
    from_fraction: float = 0.5,
    report_dir: Path | None = None,
    coarse: bool = False,
    evaluate_on: list[CapacityHistory] | None = None,
    evaluate_nominal_ah: float | None = None,
    extra_metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the SOH model from finished cells and, in the same run, score it leave-one-cell-out.

    ``coarse``: the cheaper grid of the shipped default (``cloud.soh.assemble``). The leave-one-cell-out
    report runs on ``evaluate_on`` (default: the training cells) with ``evaluate_nominal_ah``.
    """
    np.random.seed(seed)  # the build is deterministic; the seed is recorded for the contract
    model = soh.fit(histories, nominal_ah, coarse=coarse)
    training = {
        "cells": [h.cell for h in histories],
        "n_points": {h.cell: len(h) for h in histories},
        "nominal_ah": nominal_ah,
        "sha256": sha256_files(source_files) if source_files else None,
        "seed": seed,
        "cleaning": cleaning_summary(histories),
    }
    metrics: dict[str, Any] = dict(extra_metrics or {})
    report = None
    scored = evaluate_on if evaluate_on is not None else histories
    nominal_eval = evaluate_nominal_ah if evaluate_nominal_ah is not None else nominal_ah
    if len(scored) >= 2 and isinstance(nominal_eval, float | int):
        report = evaluate.evaluate_soh(scored, float(nominal_eval), eol_fraction, from_fraction)
        metrics["leave_one_cell_out"] = loo_summary(report)
    meta = soh.export(model, out_dir, name, training, metrics)
    if report is not None:
        write_report(report, report_dir or out_dir, f"{name}_evaluation", plots.soh)
    return meta


def loo_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The figures of an ``evaluate soh`` report that a model's metadata records."""
    out = {
        k: report[k]
        for k in (
            "nominal_ah",
            "eol_fraction",
            "from_fraction",
            "rmse_ah",
            "baseline_rmse_ah",
            "ratio_to_baseline_median",
            "ratio_to_baseline_max",
            "eol_abs_error_median_cycles",
            "eol_abs_error_max_cycles",
            "interval_coverage",
            "eol_interval_coverage",
        )
    }
    out["cells"] = {
        c["cell"]: {k: c[k] for k in ("rmse_ah", "baseline_rmse_ah", "eol_cycle_predicted", "eol_cycle_actual")}
        for c in report["cells"]
    }
    return out


def write_report(report: dict[str, Any], folder: Path, stem: str, plotter) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(evaluate.strip_series(report), indent=2) + "\n")
    plotter(report, folder / f"{stem}.png")
