"""How robust is the cycle-life rule? Figures measured inside the data we have (train and the primary test split).

    python -m cloud.cyclelife_study --out cloud/reports/cycle_life_robustness.json
    python -m cloud.cyclelife_study --compare A.onnx B.onnx   # how far apart two models' predictions are

- nested cross-validation on the training cells: the whole rule (selection + ensemble + interval) is rerun inside
  each outer training fold and scored on the outer fold's unseen policies; the winner alone is scored beside it;
- transfer: the rule run on train and scored on test1 (without cell22), and run on test1 and scored on train;
- batch shift: train + test1 pooled, the rule run on one batch (2017-05-12 or 2017-06-30) and scored on the other,
  and the shipped ensemble (members chosen on train) refit on one batch and scored on the other, beside the
  structure the rule would choose on the pooled cells; the mean log10 residual says how much longer or shorter a
  batch lives than the features say (what no model of these features can correct on a new batch);
- data size: pooled nested cross-validation, the rule run on all the outer-training policies or on half of them.

None of this chooses anything: the rule is fixed in ``cloud.cyclelife_select``. The secondary test split is not here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cloud import cyclelife_select as S
from cloud.datasets.severson import QdlinSet, load_qdlin, severson_root, split_paths, split_policies

SEVERSON_EXCLUDE = ("cell22.csv",)
PREVIOUS = "previous model's structure (variance_capacity@20/2, OLS)"


def _subset(data: QdlinSet, idx: np.ndarray) -> QdlinSet:
    return QdlinSet([data.files[i] for i in idx], data.qdlin[idx], data.cycle_life[idx], data.paths)


def fit_rule(feats: dict, life: np.ndarray, groups: np.ndarray, repeats: int = S.REPEATS):
    """The rule on a set of cells: (ensemble model with its interval, selection)."""
    sel = S.select(feats, life, groups, repeats=repeats)
    model = S.fit_ensemble(sel.members, feats, np.log10(life))
    model.offsets = S.interval_offsets(sel.oof, np.log10(life))
    return model, sel


def _columns(feats: dict, refs) -> np.ndarray:
    return np.column_stack([feats[r] for r in refs])


def score(model: S.LinearLog10Model, feats: dict, life: np.ndarray) -> dict[str, float]:
    x = _columns(feats, model.refs)
    pred = model.predict(x)
    lo, hi = model.interval(x)
    res = np.log10(life) - model.log10(x)
    return {
        "n_cells": int(life.size),
        "rmse_cycles": S.rmse(pred, life),
        "mape_pct": float(np.mean(np.abs(pred - life) / life) * 100),
        "interval_coverage": float(np.mean((life >= lo) & (life <= hi))),
        "mean_log10_residual": float(np.mean(res)),
    }


def nested_cv(
    feats: dict, life: np.ndarray, groups: np.ndarray, outer_repeats: int = 4, inner_repeats: int = 10
) -> dict[str, Any]:
    """Selection-aware grouped CV: RMSE per outer repeat of the rule (ensemble) and of the winner alone."""
    y = np.log10(life)
    by_label = {c.label: c for c in S.candidates()}
    out: dict[str, list[float]] = {"ensemble": [], "winner_alone": [], "coverage": []}
    for fold in S.grouped_folds(groups, outer_repeats, S.FOLDS, seed=1000):
        ens, win, lo, hi = (np.empty_like(y) for _ in range(4))
        for f in np.unique(fold):
            test, fit = fold == f, fold != f
            sub = {r: v[fit] for r, v in feats.items()}
            model, sel = fit_rule(sub, life[fit], groups[fit], inner_repeats)
            x = _columns({r: v[test] for r, v in feats.items()}, model.refs)
            ens[test] = model.log10(x)
            lo[test], hi[test] = ens[test] + model.offsets[0], ens[test] + model.offsets[1]
            best = by_label[sel.best]
            c, b = S.fit_linear(best.regressor, _columns(sub, best.refs), y[fit])
            win[test] = c + _columns({r: v[test] for r, v in feats.items()}, best.refs) @ b
        out["ensemble"].append(S.rmse(10**ens, life))
        out["winner_alone"].append(S.rmse(10**win, life))
        out["coverage"].append(float(np.mean((y >= lo) & (y <= hi))))
    return {
        "outer": f"{outer_repeats} x {S.FOLDS}-fold grouped by policy; inner {inner_repeats} x {S.FOLDS}-fold",
        **{f"{k}_per_repeat": v for k, v in out.items()},
        **{f"{k}_mean": float(np.mean(v)) for k, v in out.items()},
    }


def study(data_dir: Path | None = None) -> dict[str, Any]:
    root = severson_root(data_dir)
    train = load_qdlin(*split_paths(root, "train"))
    test1_all = load_qdlin(*split_paths(root, "test1"))
    keep = np.array([f not in SEVERSON_EXCLUDE for f in test1_all.files])
    pol_tr = split_policies(root, "train", train.cycle_life)
    pol_te = split_policies(root, "test1", test1_all.cycle_life)
    test1 = _subset(test1_all, np.nonzero(keep)[0])
    g_tr, g_te = np.array(pol_tr.policy), np.array(pol_te.policy)[keep]
    b_tr, b_te = np.array(pol_tr.batch), np.array(pol_te.batch)[keep]
    f_tr, f_te = S.all_features(train.qdlin), S.all_features(test1.qdlin)

    report: dict[str, Any] = {"nested_cv_train": nested_cv(f_tr, train.cycle_life, g_tr)}
    m_tr, sel_tr = fit_rule(f_tr, train.cycle_life, g_tr)
    m_te, sel_te = fit_rule(f_te, test1.cycle_life, g_te)
    report["train_to_test1"] = {**score(m_tr, f_te, test1.cycle_life), "members": len(sel_tr.members)}
    report["train_to_test1"]["by_batch"] = {
        b: score(m_tr, {r: v[b_te == b] for r, v in f_te.items()}, test1.cycle_life[b_te == b]) for b in np.unique(b_te)
    }
    report["test1_to_train"] = {
        **score(m_te, f_tr, train.cycle_life),
        "members": len(sel_te.members),
        "best_single": sel_te.best,
    }
    pooled = {r: np.concatenate([f_tr[r], f_te[r]]) for r in f_tr}
    life = np.concatenate([train.cycle_life, test1.cycle_life])
    groups, batch = np.concatenate([g_tr, g_te]), np.concatenate([b_tr, b_te])
    _, sel_all = fit_rule(pooled, life, groups)
    structures = {
        "shipped (chosen on train)": sel_tr.members,
        "rule rerun on train + test1": sel_all.members,
        # The model shipped before this rule (one structure, chosen by leave-one-cell-out on train): it scored about
        # 190 cycles on the secondary split (issue 13), which makes it the yardstick for what these checks predict.
        PREVIOUS: S.by_label(["variance_capacity@20/2:ols"]),
    }
    report["pooled_rule"] = {
        "cv_rmse_cycles (members chosen on these folds)": float(np.mean([S.rmse(10**p, life) for p in sel_all.oof])),
        "members": [m.label for m in sel_all.members],
    }
    # How hard each structure leans on its inputs, fitted on all pooled cells: sum of |coefficient x input sd|
    # (log10 cycles). Large, opposing weights on collinear inputs are what a shift between batches amplifies.
    report["standardised_coefficient_sum"] = {}
    for name, members in structures.items():
        m = S.fit_ensemble(members, pooled, np.log10(life))
        x = _columns(pooled, m.refs)
        report["standardised_coefficient_sum"][name] = float(np.sum(np.abs(m.coef * x.std(axis=0))))
    report["by_batch"] = {}
    for b in np.unique(batch):
        fit = batch != b
        sub, held = {r: v[fit] for r, v in pooled.items()}, {r: v[~fit] for r, v in pooled.items()}
        m, _ = fit_rule(sub, life[fit], groups[fit])
        row = {
            "fit_life_range": [float(life[fit].min()), float(life[fit].max())],
            "scored_life_range": [float(life[~fit].min()), float(life[~fit].max())],
            "rule": score(m, held, life[~fit]),
        }
        for name, members in structures.items():
            fixed = S.fit_ensemble(members, sub, np.log10(life[fit]))
            fixed.offsets = m.offsets
            row[name] = {k: v for k, v in score(fixed, held, life[~fit]).items() if k != "interval_coverage"}
        report["by_batch"][f"fit on the other batch, score {b}"] = row
    report["data_size"] = data_size(pooled, life, groups)
    return report


def data_size(feats: dict, life: np.ndarray, groups: np.ndarray, outer_repeats: int = 2) -> dict[str, Any]:
    """Nested grouped CV on pooled cells: the rule fitted on all the outer-training policies, or on half of them."""
    y = np.log10(life)
    out: dict[str, list[float]] = {"all": [], "half": []}
    cells: dict[str, list[int]] = {"all": [], "half": []}
    for rep, fold in enumerate(S.grouped_folds(groups, outer_repeats, S.FOLDS, seed=2000)):
        pred = {k: np.empty_like(y) for k in out}
        for f in np.unique(fold):
            test, fit = fold == f, np.nonzero(fold != f)[0]
            kept = np.random.default_rng(10 * rep + f).permutation(np.unique(groups[fit]))
            half = fit[np.isin(groups[fit], kept[: kept.size // 2])]
            for name, idx in (("all", fit), ("half", half)):
                m, _ = fit_rule({r: v[idx] for r, v in feats.items()}, life[idx], groups[idx], repeats=10)
                pred[name][test] = m.log10(_columns({r: v[test] for r, v in feats.items()}, m.refs))
                cells[name].append(int(idx.size))
        for k, scores in out.items():
            scores.append(S.rmse(10 ** pred[k], life))
    return {
        "outer": f"{outer_repeats} x {S.FOLDS}-fold grouped by policy on train + test1",
        **{f"{k}_rmse_per_repeat": v for k, v in out.items()},
        **{f"{k}_mean_training_cells": float(np.mean(v)) for k, v in cells.items()},
    }


def compare(model_a: Path, model_b: Path, data_dir: Path | None = None) -> dict[str, Any]:
    """How far apart two cycle-life models' predictions are on train + test1 (without cell22). By the triangle
    inequality, their RMSEs on any set of cells differ by at most the RMS of their difference there: a model
    that predicts within d cycles of another cannot score more than d better on the same cells."""
    from agent.inference import CycleLifePredictor

    root = severson_root(data_dir)
    sets = [load_qdlin(*split_paths(root, "train")), load_qdlin(*split_paths(root, "test1"), SEVERSON_EXCLUDE)]
    qdlin, life = np.concatenate([d.qdlin for d in sets]), np.concatenate([d.cycle_life for d in sets])
    models = [CycleLifePredictor(path) for path in (model_a, model_b)]
    a, b = (m.predict(m.features_qdlin(qdlin)) for m in models)
    la, lb, ly = np.log10(a), np.log10(b), np.log10(life)
    return {
        "models": [m.version for m in models],
        "n_cells": int(life.size),
        "rmse_cycles": [S.rmse(a, life), S.rmse(b, life)],
        "rms_difference_cycles": S.rmse(a, b),
        "mean_log10_difference": float(np.mean(la - lb)),
        "sd_log10_difference": float(np.std(la - lb)),
        "residual_correlation_log10": float(np.corrcoef(ly - la, ly - lb)[0, 1]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, help="shared data folder (default: ../shared/data or $BATTERY_TWIN_DATA)")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar="ONNX",
        help="instead of the study: how far apart two models' predictions are on train + test1",
    )
    args = p.parse_args(argv)
    report = compare(*args.compare, args.data_dir) if args.compare else study(args.data_dir)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
