"""Early cycle-life model: train on the Severson train split, select by leave-one-out CV, export to ONNX.

The model is linear in log10(cycle life), like Severson et al.'s (a ridge regression on standardised
features). What is chosen, and how, is fixed here and uses the training cells only:
  - candidates: dQ(V) window spec (early cycle 10 or 20, single cycle or 5-cycle median) x feature set
    (``agent.features.cyclelife.FEATURE_SETS``); ridge penalty chosen inside each fit by RidgeCV;
  - selection: the smallest leave-one-cell-out RMSE (cycles) on the training cells; ties go to fewer features.
The "variance" baseline (Severson's one-feature model: log10 var dQ100-10, ordinary least squares) is refit on the
same training cells in the same run, so every report compares both side by side.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LinearRegression, Ridge, RidgeCV
from sklearn.model_selection import LeaveOneOut, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from agent.features import cyclelife as F
from agent.features.qdv import SEVERSON_GRID, VoltageGrid
from cloud.datasets.severson import QdlinSet

ALPHAS = np.logspace(-3, 2, 30)
SPECS = [F.CycleLifeSpec(10, 0), F.CycleLifeSpec(10, 2), F.CycleLifeSpec(20, 0), F.CycleLifeSpec(20, 2)]
BASELINE_SPEC = F.CycleLifeSpec(10, 0)
BASELINE_FEATURES = ("log10_var_dq_ah2",)


def features(data: QdlinSet, spec: F.CycleLifeSpec, names: tuple[str, ...]) -> np.ndarray:
    early, late, cap = F.window_curves(data.qdlin, spec)
    return F.compute(early, late, cap, names)


def rmse(pred: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(actual)) ** 2)))


def mape_pct(pred: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred) - actual) / actual) * 100)


def _ridge_cv() -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("ridge", RidgeCV(alphas=ALPHAS))])


def _ols() -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("ols", LinearRegression())])


def loo_predictions(make, x: np.ndarray, life: np.ndarray) -> np.ndarray:
    """Leave-one-cell-out predictions (cycles) of a log10-life model."""
    return 10 ** cross_val_predict(make(), x, np.log10(life), cv=LeaveOneOut())


@dataclass
class CycleLifeModel:
    spec: F.CycleLifeSpec
    feature_names: tuple[str, ...]
    feature_set: str
    pipeline: Pipeline  # StandardScaler + Ridge(alpha) (or OLS for the baseline), target log10(cycle life)
    metrics: dict[str, Any] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    feature_ranges: dict[str, list[float]] = field(default_factory=dict)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return 10 ** self.pipeline.predict(x)

    @property
    def hyperparameters(self) -> dict[str, Any]:
        last = self.pipeline.steps[-1][1]
        return {
            "spec": self.spec.as_dict(),
            "feature_set": self.feature_set,
            "regressor": type(last).__name__,
            "alpha": getattr(last, "alpha", None),
            "alpha_grid": [float(ALPHAS[0]), float(ALPHAS[-1]), len(ALPHAS)],
            "target": "log10(cycle_life)",
            "selection": "min leave-one-cell-out RMSE on the training cells",
        }


def train(data: QdlinSet, seed: int = 0) -> CycleLifeModel:
    """Select and fit the cycle-life model on ``data`` (the training split only). Deterministic."""
    np.random.seed(seed)  # nothing here draws random numbers; kept so the contract (fixed seed) is explicit
    table = []
    for spec, (set_name, names) in itertools.product(SPECS, F.FEATURE_SETS.items()):
        x = features(data, spec, names)
        if not np.all(np.isfinite(x)):
            continue
        pred = loo_predictions(_ridge_cv, x, data.cycle_life)
        table.append(
            {
                "early_cycle": spec.early_cycle,
                "half_width": spec.half_width,
                "feature_set": set_name,
                "n_features": len(names),
                "loo_rmse_cycles": rmse(pred, data.cycle_life),
                "loo_mape_pct": mape_pct(pred, data.cycle_life),
            }
        )
    best = min(table, key=lambda r: (round(r["loo_rmse_cycles"], 6), r["n_features"]))
    spec = F.CycleLifeSpec(best["early_cycle"], best["half_width"])
    names = F.FEATURE_SETS[best["feature_set"]]
    x = features(data, spec, names)
    y = np.log10(data.cycle_life)
    alpha = float(_ridge_cv().fit(x, y).named_steps["ridge"].alpha_)
    pipe = Pipeline([("scale", StandardScaler()), ("ridge", Ridge(alpha=alpha))]).fit(x, y)
    model = CycleLifeModel(
        spec,
        names,
        best["feature_set"],
        pipe,
        candidates=table,
        feature_ranges={n: [float(x[:, i].min()), float(x[:, i].max())] for i, n in enumerate(names)},
    )
    model.metrics = {
        "train_rmse_cycles": rmse(model.predict(x), data.cycle_life),
        "train_mape_pct": mape_pct(model.predict(x), data.cycle_life),
        "loo_rmse_cycles": best["loo_rmse_cycles"],
        "n_train_cells": int(x.shape[0]),
    }
    return model


def train_baseline(data: QdlinSet) -> CycleLifeModel:
    """Severson's "variance" model: OLS of log10(cycle life) on log10 var(dQ100-10(V))."""
    x = features(data, BASELINE_SPEC, BASELINE_FEATURES)
    pipe = _ols().fit(x, np.log10(data.cycle_life))
    m = CycleLifeModel(BASELINE_SPEC, BASELINE_FEATURES, "variance", pipe)
    m.metrics = {
        "train_rmse_cycles": rmse(m.predict(x), data.cycle_life),
        "loo_rmse_cycles": rmse(loo_predictions(_ols, x, data.cycle_life), data.cycle_life),
    }
    return m


def export(
    model: CycleLifeModel,
    out_dir: Path,
    name: str,
    training: dict[str, Any],
    grid: VoltageGrid = SEVERSON_GRID,
    extra_metrics: dict[str, Any] | None = None,
) -> dict:
    """Write ``name.onnx`` + ``name.json``; returns the metadata."""
    from cloud import onnx_export

    onnx_model = onnx_export.sklearn_to_onnx(model.pipeline, len(model.feature_names), log10_output=True)
    meta = {
        "task": "early cycle-life prediction from the first 100 cycles",
        "features": [{"name": n, "unit": F.FEATURES[n]} for n in model.feature_names],
        "feature_ranges": model.feature_ranges,
        "inputs": [{"name": "features", "dtype": "float64", "shape": ["cells", len(model.feature_names)]}],
        "outputs": [
            {"name": "cycle_life", "unit": "cycles", "shape": ["cells", 1]},
            {"name": "log10_cycle_life", "unit": "log10(cycles)", "shape": ["cells", 1]},
        ],
        "applies_to": {
            "chemistry": "lfp",
            "cell": "A123 APR18650M1A 1.1 Ah (Severson et al. 2019)",
            "voltage_grid": grid.as_dict(),
            "cycle_life_definition": "cycles to 80% of nominal",
        },
        "feature_spec": model.spec.as_dict(),
        "hyperparameters": model.hyperparameters,
        "training_data": training,
        "metrics": {**model.metrics, **(extra_metrics or {})},
        "selection_table": model.candidates,
    }
    return onnx_export.finalize(onnx_model, "cycle-life", meta, Path(out_dir), name)
