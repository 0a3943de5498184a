"""Evaluations behind ``battery-twin model evaluate``: JSON-ready dicts, each with its baseline from the same run.

Predictions always go through the exported ONNX graph and onnxruntime (``agent.inference``), the path the edge
runs; the scikit-learn / numpy models are only the training side.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from agent.features import soh as soh_features
from agent.inference import CycleLifePredictor, SohForecaster
from cloud import cyclelife, soh
from cloud.datasets.capacity import CapacityHistory
from cloud.datasets.severson import QdlinSet
from cloud.onnx_export import sha256_files

SEVERSON_PUBLISHED = {"variance": 138, "discharge": 91, "full": 118}


# ---------------------------------------------------------------------------------------------- cycle life
def evaluate_cycle_life(model_path: Path | None, test: QdlinSet, train: QdlinSet) -> dict[str, Any]:
    """Score a cycle-life ONNX model (point and interval) on ``test``; refit and score the variance baseline on
    ``train``."""
    predictor = CycleLifePredictor(model_path)
    x = predictor.features_qdlin(test.qdlin)
    pred, lower, upper = predictor.predict_interval(x)
    baseline = cyclelife.train_baseline(train)
    pred_base = baseline.predict(cyclelife.features(test, baseline.spec, baseline.feature_names))
    actual = test.cycle_life
    extrap = predictor.extrapolating(x)
    meta = predictor.model.meta
    trained = meta.get("training_data", {})
    trained_hashes = {trained.get("sha256")} | {s.get("sha256") for s in trained.get("splits", [])}
    report: dict[str, Any] = {
        "task": "cycle-life",
        "n_cells": int(actual.size),
        "rmse_cycles": cyclelife.rmse(pred, actual),
        "mape_pct": cyclelife.mape_pct(pred, actual),
        "model": {
            "version": predictor.version,
            "file": predictor.model.path.name,
            "features": [r.key for r in predictor.refs],
            "windows": [s.as_dict() for s in cyclelife.F.windows(predictor.refs)],
            "trained_on": [s["source"] for s in trained.get("splits", [])] or trained.get("source"),
        },
        # True when the scored folder is one the model was fitted on: the figures are then not held-out ones.
        "scored_split_in_training": sha256_files(test.paths) in trained_hashes,
        "baseline": {
            "name": "variance (Severson 2019: OLS on log10 var dQ100-10), refit on the training cells in this run",
            "n_train_cells": int(train.cycle_life.size),
            "rmse_cycles": cyclelife.rmse(pred_base, actual),
            "mape_pct": cyclelife.mape_pct(pred_base, actual),
            "train_rmse_cycles": baseline.metrics["train_rmse_cycles"],
        },
        "published_primary_test_rmse_cycles": SEVERSON_PUBLISHED,
    }
    if lower is not None and upper is not None:
        inside = (actual >= lower) & (actual <= upper)
        report["interval"] = {
            "quantiles": list(predictor.quantiles),
            "coverage": float(np.mean(inside)),
            "nominal_coverage": float(predictor.quantiles[1] - predictor.quantiles[0]) if predictor.quantiles else None,
            "below": int(np.sum(actual < lower)),
            "above": int(np.sum(actual > upper)),
            "median_width_cycles": float(np.median(upper - lower)),
        }
    bounds = zip(lower, upper) if lower is not None and upper is not None else ((None, None) for _ in actual)
    report["cells"] = [
        {
            "file": f,
            "actual": float(a),
            "predicted": float(p),
            "lower": None if lo is None else float(lo),
            "upper": None if hi is None else float(hi),
            "baseline_predicted": float(b),
            "error": float(p - a),
            "extrapolating": bool(e),
        }
        for f, a, p, (lo, hi), b, e in zip(test.files, actual, pred, bounds, pred_base, extrap)
    ]
    return report


# ---------------------------------------------------------------------------------------------- SOH
def _first_crossing(cycles: np.ndarray, values: np.ndarray, threshold: float) -> float | None:
    below = np.nonzero(values <= threshold)[0]
    return float(cycles[below[0]]) if below.size else None


def _cap(h: float) -> float | None:
    return float(h) if np.isfinite(h) and h < 1e6 else None


def forecast_cell(model_path: Path, cell: CapacityHistory, k: int, eol_ah: float) -> dict[str, Any]:
    """Forecast one cell from its first k cycles with an ONNX SOH model; baseline and floor from the same data."""
    forecaster = SohForecaster(model_path)
    hist_dense = soh.dense_history(CapacityHistory(cell.cell, cell.cycle[:k], cell.capacity_ah[:k]))
    x = forecaster.features(soh_features.right_align([hist_dense]))
    origin = int(cell.cycle[k - 1])
    fut_cycles, fut_actual = cell.cycle[k:], cell.capacity_ah[k:]
    pred, eol_ahead = forecaster.forecast(x, fut_cycles - origin, eol_ah)
    pred = pred[0]
    line = np.polyfit(cell.cycle[:k].astype(float), cell.capacity_ah[:k], 1)
    base = np.polyval(line, fut_cycles.astype(float))
    rmse = float(np.sqrt(np.mean((pred - fut_actual) ** 2)))
    base_rmse = float(np.sqrt(np.mean((base - fut_actual) ** 2)))
    floor = None
    if fut_cycles.size >= 8:  # the best cubic fitted to the future itself: what no smooth forecast can beat
        c3 = np.polyfit(fut_cycles.astype(float), fut_actual, 3)
        floor = float(np.sqrt(np.mean((np.polyval(c3, fut_cycles.astype(float)) - fut_actual) ** 2)))
    actual_eol = _first_crossing(cell.cycle, cell.capacity_ah, eol_ah)
    eol_pred = _cap(origin + eol_ahead[0])
    base_eol = None
    if line[0] < 0:
        base_eol = _cap(max((eol_ah - line[1]) / line[0], float(origin)))
    return {
        "cell": cell.cell,
        "n_cycles": len(cell),
        "origin_cycle": origin,
        "forecast_cycles": int(fut_cycles.size),
        "rmse_ah": rmse,
        "baseline_rmse_ah": base_rmse,
        "ratio_to_baseline": rmse / base_rmse if base_rmse > 0 else None,
        "noise_floor_rmse_ah": floor,
        "eol_cycle_predicted": eol_pred,
        "eol_cycle_baseline": base_eol,
        "eol_cycle_actual": actual_eol,
        "eol_error_cycles": (eol_pred - actual_eol) if (eol_pred is not None and actual_eol is not None) else None,
        "eol_baseline_error_cycles": (base_eol - actual_eol)
        if (base_eol is not None and actual_eol is not None)
        else None,
        "eol_reached_before_origin": bool(actual_eol is not None and actual_eol <= origin),
        "model_version": forecaster.version,
        "_series": {
            "cycles": cell.cycle.tolist(),
            "actual": cell.capacity_ah.tolist(),
            "forecast_cycles": fut_cycles.tolist(),
            "forecast": pred.tolist(),
            "baseline": base.tolist(),
        },
    }


def evaluate_soh(
    cells: list[CapacityHistory],
    nominal_ah: float,
    eol_fraction: float,
    from_fraction: float,
    model_path: Path | None = None,
) -> dict[str, Any]:
    """Leave-one-cell-out (default: each cell forecast by a model fitted on the others and exported to ONNX),
    or a fixed ONNX model for every cell (``model_path``)."""
    if not 0 < from_fraction < 1:
        raise ValueError("--from-fraction must be between 0 and 1")
    if model_path is None and len(cells) < 2:
        raise ValueError("leave-one-cell-out needs at least 2 cells (or give --model)")
    eol_ah = eol_fraction * nominal_ah
    results, folds, sq, sq_base = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, cell in enumerate(cells):
            k = int(len(cell) * from_fraction)
            if k < soh.MIN_CYCLES or k >= len(cell):
                raise ValueError(
                    f"cell {cell.cell}: {len(cell)} cycles is too short to forecast from "
                    f"{from_fraction:.0%} of its history"
                )
            path = model_path
            if path is None:
                fold = soh.fit([c for j, c in enumerate(cells) if j != i])
                meta = soh.export(fold, Path(tmp), f"fold{i}", {"cells": fold.fit_info["training_cells"]})
                path = Path(tmp) / f"fold{i}.onnx"
                folds.append(
                    {
                        "held_out": cell.cell,
                        **{k2: meta["hyperparameters"][k2] for k2 in ("kappa", "level_window")},
                        "training_cells": fold.fit_info["training_cells"],
                    }
                )
            r = forecast_cell(path, cell, k, eol_ah)
            s = r["_series"]
            sq.extend((np.array(s["forecast"]) - s["actual"][k:]) ** 2)
            sq_base.extend((np.array(s["baseline"]) - s["actual"][k:]) ** 2)
            results.append(r)
    goal = [r["cell"] for r in results if r["ratio_to_baseline"] is not None and r["ratio_to_baseline"] <= 0.5]
    return {
        "task": "soh",
        "mode": "fixed model" if model_path else "leave-one-cell-out",
        "nominal_ah": nominal_ah,
        "eol_fraction": eol_fraction,
        "eol_capacity_ah": eol_ah,
        "from_fraction": from_fraction,
        "n_cells": len(cells),
        "rmse_ah": float(np.sqrt(np.mean(sq))),
        "baseline_rmse_ah": float(np.sqrt(np.mean(sq_base))),
        "baseline": "linear extrapolation of a least-squares line through the cell's history up to the origin",
        "goal_half_baseline_met_for": goal,
        "goal_half_baseline_met": len(goal) == len(results),
        "folds": folds,
        "cells": results,
    }


def strip_series(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the per-cycle series (kept for plots, too long for the JSON summary)."""
    out = dict(report)
    out["cells"] = [{k: v for k, v in c.items() if k != "_series"} for c in report["cells"]]
    return out
