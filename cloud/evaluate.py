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
from cloud.datasets.capacity import CapacityHistory, cleaning_summary
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
def first_crossing(cycles: np.ndarray, values: np.ndarray, threshold: float) -> float | None:
    """Cycle at which capacity first falls to ``threshold``: linear interpolation between the last point above it
    and the first at or below it (sparse checkpoints are 100+ cycles apart; the first point below would be late)."""
    below = np.nonzero(values <= threshold)[0]
    if not below.size:
        return None
    i = int(below[0])
    if i == 0 or values[i - 1] <= values[i]:
        return float(cycles[i])
    c0, c1, q0, q1 = float(cycles[i - 1]), float(cycles[i]), float(values[i - 1]), float(values[i])
    return c0 + (q0 - threshold) / (q0 - q1) * (c1 - c0)


def _num(h: float) -> float | None:
    return float(h) if np.isfinite(h) and abs(h) < 1e7 else None


def forecast_cell(model_path: Path, cell: CapacityHistory, k: int, nominal_ah: float, eol_ah: float) -> dict[str, Any]:
    """Forecast one cell from its first k points with a SOH model file (the edge's code); baseline from the same data."""
    forecaster = SohForecaster(model_path)
    origin = int(cell.cycle[k - 1])
    fut_cycles, fut_actual = cell.cycle[k:].astype(float), cell.capacity_ah[k:]
    dense = np.linspace(origin, float(cell.cycle[-1]), 121)[1:]
    horizons = np.r_[fut_cycles, dense] - origin
    f = forecaster.forecast(cell.cycle[None, :k], cell.capacity_ah[None, :k], nominal_ah, horizons, eol_ah)
    n = fut_cycles.size
    pred, lo, hi = f.capacity_ah[0, :n], f.lower_ah[0, :n], f.upper_ah[0, :n]
    line = np.polyfit(cell.cycle[:k].astype(float), cell.capacity_ah[:k], 1)
    base = np.polyval(line, fut_cycles)
    rmse = float(np.sqrt(np.mean((pred - fut_actual) ** 2)))
    base_rmse = float(np.sqrt(np.mean((base - fut_actual) ** 2)))
    floor = None
    if n >= 8:  # the best cubic fitted to the future itself: what no smooth forecast can beat
        c3 = np.polyfit(fut_cycles, fut_actual, 3)
        floor = float(np.sqrt(np.mean((np.polyval(c3, fut_cycles) - fut_actual) ** 2)))
    actual_eol = first_crossing(cell.cycle, cell.capacity_ah, eol_ah)
    eol_pred, eol_lo, eol_hi = (_num(v[0]) for v in (f.eol_cycle, f.eol_lower, f.eol_upper))
    base_eol = _num(max((eol_ah - line[1]) / line[0], float(origin))) if line[0] < 0 else None
    inside = (fut_actual >= lo) & (fut_actual <= hi)
    return {
        "cell": cell.cell,
        "n_cycles": len(cell),
        "origin_cycle": origin,
        "forecast_cycles": int(n),
        "rmse_ah": rmse,
        "baseline_rmse_ah": base_rmse,
        "ratio_to_baseline": rmse / base_rmse if base_rmse > 0 else None,
        "noise_floor_rmse_ah": floor,
        "interval_coverage": float(inside.mean()),
        "eol_cycle_predicted": eol_pred,
        "eol_cycle_lower": eol_lo,
        "eol_cycle_upper": eol_hi,
        "eol_cycle_baseline": base_eol,
        "eol_cycle_actual": actual_eol,
        "eol_error_cycles": (eol_pred - actual_eol) if (eol_pred is not None and actual_eol is not None) else None,
        "eol_baseline_error_cycles": (base_eol - actual_eol)
        if (base_eol is not None and actual_eol is not None)
        else None,
        "eol_within_interval": bool(eol_lo <= actual_eol <= eol_hi)
        if (actual_eol is not None and eol_lo is not None and eol_hi is not None)
        else None,
        "eol_reached_before_origin": bool(actual_eol is not None and actual_eol <= origin),
        "history_outliers_dropped": int(f.outliers[0]),
        "model_version": forecaster.version,
        "_series": {
            "cycles": cell.cycle.tolist(),
            "actual": cell.capacity_ah.tolist(),
            "forecast_cycles": fut_cycles.tolist(),
            "forecast": pred.tolist(),
            "lower": lo.tolist(),
            "upper": hi.tolist(),
            "baseline": base.tolist(),
            "dense_cycles": dense.tolist(),
            "dense_forecast": f.capacity_ah[0, n:].tolist(),
            "dense_lower": f.lower_ah[0, n:].tolist(),
            "dense_upper": f.upper_ah[0, n:].tolist(),
        },
    }


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = np.array([r["ratio_to_baseline"] for r in results if r["ratio_to_baseline"] is not None])
    eol_err = np.array([abs(r["eol_error_cycles"]) for r in results if r["eol_error_cycles"] is not None])
    n = np.array([r["forecast_cycles"] for r in results], dtype=float)
    cov = np.array([r["interval_coverage"] for r in results])
    eol_in = [r["eol_within_interval"] for r in results if r["eol_within_interval"] is not None]
    return {
        "ratio_to_baseline_median": float(np.median(ratios)) if ratios.size else None,
        "ratio_to_baseline_max": float(ratios.max()) if ratios.size else None,
        "eol_abs_error_median_cycles": float(np.median(eol_err)) if eol_err.size else None,
        "eol_abs_error_max_cycles": float(eol_err.max()) if eol_err.size else None,
        "eol_cells_scored": int(eol_err.size),
        "interval_coverage": float((cov * n).sum() / n.sum()) if n.sum() else None,
        "eol_interval_coverage": float(np.mean(eol_in)) if eol_in else None,
    }


def evaluate_soh(
    cells: list[CapacityHistory],
    nominal_ah: float,
    eol_fraction: float,
    from_fraction: float,
    model_path: Path | None = None,
) -> dict[str, Any]:
    """Leave-one-cell-out (default: each cell forecast by a model built from the others and written to its files),
    or a fixed model file for every cell (``model_path``)."""
    if not 0 < from_fraction < 1:
        raise ValueError("--from-fraction must be between 0 and 1")
    if not nominal_ah > 0:
        raise ValueError("--nominal-ah must be positive")
    if model_path is None and len(cells) < 2:
        raise ValueError("leave-one-cell-out needs at least 2 cells (or give --model)")
    eol_ah = eol_fraction * nominal_ah
    refs = {c.cell: soh.reference(c, nominal_ah) for c in cells} if model_path is None else {}
    results, folds, sq, sq_base = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, cell in enumerate(cells):
            k = int(len(cell) * from_fraction)
            if k < soh_features.MIN_POINTS or k >= len(cell):
                raise ValueError(
                    f"cell {cell.cell}: {len(cell)} points is too short to forecast from {from_fraction:.0%} of its "
                    f"history (needs at least {soh_features.MIN_POINTS} before and 1 after)"
                )
            path = model_path
            if path is None:
                train = [c for j, c in enumerate(cells) if j != i]
                model = soh.assemble([refs[c.cell] for c in train])
                soh.export(model, Path(tmp), f"fold{i}", {"cells": [c.cell for c in train]})
                path = Path(tmp) / f"fold{i}.refs"
                folds.append(
                    {
                        "held_out": cell.cell,
                        "training_cells": [c.cell for c in train],
                        "rate_sigma": model["params"]["rate_sigma"],
                    }
                )
            r = forecast_cell(path, cell, k, nominal_ah, eol_ah)
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
        "interval": {"lower_quantile": soh.QUANTILES[0], "upper_quantile": soh.QUANTILES[1]},
        **_summary(results),
        "goal_half_baseline_met_for": goal,
        "goal_half_baseline_met": len(goal) == len(results),
        "data_cleaning": cleaning_summary(cells),
        "folds": folds,
        "cells": results,
    }


def strip_series(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the per-cycle series (kept for plots, too long for the JSON summary)."""
    out = dict(report)
    out["cells"] = [{k: v for k, v in c.items() if k != "_series"} for c in report["cells"]]
    return out
