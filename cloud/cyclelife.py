"""Early cycle-life model: chosen on the training cells by grouped cross-validation, exported to ONNX with its interval.

The model is linear in log10(cycle life), like Severson et al.'s. What is chosen, and how, is fixed in
``cloud.cyclelife_select`` and uses the training cells only (grouped by charging policy); the result is an
average of the near-best candidates, folded into one linear model over the union of their inputs, plus the
log10 offsets of its 10th/90th-percentile interval. The "variance" baseline (Severson's one-feature model: OLS on
log10 var dQ100-10) is refit on the same training cells in the same run, so every report compares both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agent.features import cyclelife as F
from agent.features.qdv import SEVERSON_GRID, VoltageGrid
from cloud import cyclelife_select as S
from cloud.datasets.severson import QdlinSet

BASELINE_SPEC = F.CycleLifeSpec(10, 0)
BASELINE_FEATURES = ("log10_var_dq_ah2",)
rmse = S.rmse


def features(data: QdlinSet, spec: F.CycleLifeSpec, names: tuple[str, ...]) -> np.ndarray:
    early, late, cap = F.window_curves(data.qdlin, spec)
    return F.compute(early, late, cap, names)


def mape_pct(pred: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred) - actual) / actual) * 100)


def coverage(lower: np.ndarray, upper: np.ndarray, actual: np.ndarray) -> float:
    """Fraction of cells whose actual life lies inside [lower, upper]."""
    return float(np.mean((np.asarray(actual) >= lower) & (np.asarray(actual) <= upper)))


@dataclass
class CycleLifeModel:
    linear: S.LinearLog10Model
    metrics: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)  # rule, members, grouping, the whole table
    feature_ranges: dict[str, list[float]] = field(default_factory=dict)
    capacity_ah: float | None = None  # median cycle-2 discharge capacity of the training cells (what Ah features mean)

    @property
    def refs(self) -> tuple[F.FeatureRef, ...]:
        return self.linear.refs

    def features(self, data: QdlinSet) -> np.ndarray:
        return F.qdlin_features(data.qdlin, self.refs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.linear.predict(x)

    def interval(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.linear.interval(x)


def train(
    data: QdlinSet,
    groups: list[str] | None = None,
    seed: int = S.SEED,
    chosen: dict[str, Any] | None = None,
) -> CycleLifeModel:
    """Select and fit the cycle-life model on ``data``. Deterministic for a seed.

    ``groups``: one label per cell (the charging policy); cells of a group are never split between fitting and
    scoring. None: every cell is its own group. ``chosen``: the ``selection`` of a model trained earlier (on a
    training split): its members are refit on ``data`` instead of being chosen again, and its out-of-fold figures
    and interval come from ``data``'s grouped folds.
    """
    labels = np.asarray(groups if groups is not None else [f.removesuffix(".csv") for f in data.files])
    if labels.size != data.cycle_life.size:
        raise ValueError(f"{labels.size} group labels for {data.cycle_life.size} training cells")
    feats = S.all_features(data.qdlin)
    y = np.log10(data.cycle_life)
    grouping = {
        "grouping": "charging policy" if groups is not None else "none (every cell its own group)",
        "n_groups": int(np.unique(labels).size),
        "cv": {"repeats": S.REPEATS, "folds": S.FOLDS, "seed": seed},
    }
    if chosen is None:
        sel = S.select(feats, data.cycle_life, labels, seed=seed)
        members, oof = sel.members, sel.oof
        selection = {
            "rule": sel.rule,
            **grouping,
            "best_single": sel.best,
            "threshold_cycles": sel.threshold_cycles,
            "members": [m.label for m in members],
            "table": sel.table,
        }
    else:
        members = S.by_label(chosen["members"])
        oof = S.ensemble_oof(members, feats, data.cycle_life, labels, seed=seed)
        selection = {**chosen, "refit": {"n_cells": int(y.size), **grouping}}
    linear = S.fit_ensemble(members, feats, y)
    linear.offsets = S.interval_offsets(oof, y)
    x = np.column_stack([feats[r] for r in linear.refs])
    lo, hi = linear.interval(x)
    oof_lo, oof_hi = 10 ** (oof + linear.offsets[0]), 10 ** (oof + linear.offsets[1])
    cv_rmse = [rmse(10**p, data.cycle_life) for p in oof]
    model = CycleLifeModel(
        linear,
        selection=selection,
        feature_ranges={r.key: [float(x[:, i].min()), float(x[:, i].max())] for i, r in enumerate(linear.refs)},
        capacity_ah=round(float(np.median(data.qdlin[:, :, 0].max(axis=1))), 4),
    )
    model.metrics = {
        "train_rmse_cycles": rmse(model.predict(x), data.cycle_life),
        "train_mape_pct": mape_pct(model.predict(x), data.cycle_life),
        "train_interval_coverage": coverage(lo, hi, data.cycle_life),
        # The ensemble's own grouped-CV figures (members fixed; cloud.cyclelife_study gives the nested,
        # selection-aware figure).
        "cv_rmse_cycles": float(np.mean(cv_rmse)),
        "cv_rmse_sd_over_repeats": float(np.std(cv_rmse)),
        "cv_interval_coverage": float(np.mean([coverage(a, b, data.cycle_life) for a, b in zip(oof_lo, oof_hi)])),
        "n_train_cells": int(x.shape[0]),
    }
    return model


@dataclass
class BaselineModel:
    spec: F.CycleLifeSpec
    feature_names: tuple[str, ...]
    intercept: float
    coef: np.ndarray
    metrics: dict[str, Any] = field(default_factory=dict)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return 10 ** (self.intercept + np.atleast_2d(x) @ self.coef)


def train_baseline(data: QdlinSet) -> BaselineModel:
    """Severson's "variance" model: OLS of log10(cycle life) on log10 var(dQ100-10(V))."""
    x = features(data, BASELINE_SPEC, BASELINE_FEATURES)
    y = np.log10(data.cycle_life)
    c, b = S.fit_linear("ols", x, y)
    m = BaselineModel(BASELINE_SPEC, BASELINE_FEATURES, c, b)
    loo = S.oof_log10("ols", x, y, [np.arange(y.size)])
    m.metrics = {
        "train_rmse_cycles": rmse(m.predict(x), data.cycle_life),
        "loo_rmse_cycles": rmse(10 ** loo[0], data.cycle_life),
    }
    return m


def to_onnx(linear: S.LinearLog10Model) -> onnx.ModelProto:
    """The model as a graph: log10 life = features @ coef + intercept; life and its interval are 10 ** (that [+ offset])."""
    dbl = TensorProto.DOUBLE
    c = lambda name, v: numpy_helper.from_array(np.asarray(v, dtype=np.float64), name)
    n = helper.make_node
    init = [
        c("coef", linear.coef.reshape(-1, 1)),
        c("intercept", [linear.intercept]),
        c("ten", 10.0),
        c("lower_offset", [linear.offsets[0]]),
        c("upper_offset", [linear.offsets[1]]),
    ]
    nodes = [
        n("MatMul", ["features", "coef"], ["xw"]),
        n("Add", ["xw", "intercept"], ["log10_cycle_life"]),
        n("Pow", ["ten", "log10_cycle_life"], ["cycle_life"]),
        n("Add", ["log10_cycle_life", "lower_offset"], ["log10_lower"]),
        n("Pow", ["ten", "log10_lower"], ["cycle_life_lower"]),
        n("Add", ["log10_cycle_life", "upper_offset"], ["log10_upper"]),
        n("Pow", ["ten", "log10_upper"], ["cycle_life_upper"]),
    ]
    out = lambda name: helper.make_tensor_value_info(name, dbl, ["cells", 1])
    graph = helper.make_graph(
        nodes,
        "cycle_life_linear_log10",
        [helper.make_tensor_value_info("features", dbl, ["cells", len(linear.refs)])],
        [out("cycle_life"), out("cycle_life_lower"), out("cycle_life_upper"), out("log10_cycle_life")],
        init,
    )
    from cloud.onnx_export import OPSET

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


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

    refs = model.refs
    windows = F.windows(refs)
    lo_q, hi_q = S.INTERVAL_QUANTILES
    meta = {
        "task": "early cycle-life prediction from the first 100 cycles, with an interval",
        "features": [
            {
                "name": r.name,
                "key": r.key,
                "unit": F.FEATURES[r.name],
                "window": {"early_cycle": r.spec.early_cycle, "half_width": r.spec.half_width} if r.spec else None,
            }
            for r in refs
        ],
        "feature_ranges": model.feature_ranges,
        "windows": [s.as_dict() for s in windows],
        "inputs": [{"name": "features", "dtype": "float64", "shape": ["cells", len(refs)]}],
        "outputs": [
            {"name": "cycle_life", "unit": "cycles", "shape": ["cells", 1]},
            {"name": "cycle_life_lower", "unit": "cycles", "shape": ["cells", 1], "quantile": lo_q},
            {"name": "cycle_life_upper", "unit": "cycles", "shape": ["cells", 1], "quantile": hi_q},
            {"name": "log10_cycle_life", "unit": "log10(cycles)", "shape": ["cells", 1]},
        ],
        "interval": {
            "quantiles": [lo_q, hi_q],
            "log10_offsets": list(model.linear.offsets),
            "method": "quantiles of the ensemble's out-of-fold log10 residuals in the grouped cross-validation",
        },
        "applies_to": {
            "chemistry": "lfp",
            "cell": "A123 APR18650M1A 1.1 Ah (Severson et al. 2019)",
            # Its capacity features are in Ah of the training cells: a cell of another size reads as another fade,
            # so the twin runs the model only for cells whose nominal capacity is within the tolerance of this.
            "capacity_ah": model.capacity_ah,
            "capacity_tolerance": 0.25,
            "voltage_grid": grid.as_dict(),
            "cycle_life_definition": "cycles to 80% of nominal",
        },
        "hyperparameters": {
            "target": "log10(cycle_life)",
            "regressors": list(S.REGRESSORS),
            "ridge_alpha_grid": [float(S.ALPHAS[0]), float(S.ALPHAS[-1]), len(S.ALPHAS)],
            "huber_epsilon": S.HUBER_EPSILON,
            "coefficients": {r.key: float(v) for r, v in zip(refs, model.linear.coef)},
            "intercept": model.linear.intercept,
            **{k: v for k, v in model.selection.items() if k != "table"},
        },
        "training_data": training,
        "metrics": {**model.metrics, **(extra_metrics or {})},
        "selection_table": model.selection.get("table", []),
    }
    return onnx_export.finalize(to_onnx(model.linear), "cycle-life", meta, Path(out_dir), name)
