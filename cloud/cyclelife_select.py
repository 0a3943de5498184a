"""How the cycle-life model is chosen: grouped cross-validation on the training cells, and a rule fixed in code.

Candidates: every window (``SPECS``) x feature set (``agent.features.cyclelife.FEATURE_SETS``) x regressor
(``REGRESSORS``), all linear in log10(cycle life). Each is scored by repeated grouped K-fold cross-validation:
cells that share a charging policy are never split between fitting and scoring, so a score says how the model does
on a policy it has not seen (the secondary test split's policies are all new). The rule, in ``select``:

  1. score = mean over the repeats of the RMSE (cycles) of the out-of-fold predictions of all training cells;
     se = standard deviation of the per-fold RMSEs / sqrt(K) (the one-standard-error rule's error bar);
  2. the model is the average, in log10 space, of every candidate whose score is within one se of the best.

Averaging the near-best candidates instead of taking the winner is what keeps the choice stable: in nested
cross-validation (``cloud.cyclelife_study``; cloud/reports/cycle_life_robustness.json) the winner alone scored
86 to 131 cycles from one outer repeat to the next (mean 102), the average 77 to 106 (mean 87). An average of
linear models is one linear model, so the ensemble is still a single matrix product on the edge.

The interval: the 10th and 90th percentiles of the ensemble's out-of-fold log10 residuals (the same grouped
folds), added to its log10 prediction: a cross-validation conformal interval, width constant on the log scale.

The regressions are written out in numpy (OLS, ridge with its penalty chosen by leave-one-out inside each fit,
Huber by IRLS): the selection fits ~25,000 small models, and scikit-learn's per-call overhead made that minutes on
a shared 2-core machine; these are the textbook formulas, checked against scikit-learn in tests/models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.features import cyclelife as F

SPECS = (
    F.CycleLifeSpec(10, 0),  # Severson's dQ100-10
    F.CycleLifeSpec(20, 0),
    F.CycleLifeSpec(10, 2),  # 5-cycle medians
    F.CycleLifeSpec(20, 2),
    F.CycleLifeSpec(20, 4),  # 9-cycle medians
    F.CycleLifeSpec(30, 2),
)
REGRESSORS = ("ols", "ridge", "huber")
REGRESSOR_RANK = {r: i for i, r in enumerate(REGRESSORS)}
ALPHAS = np.logspace(-3, 3, 25)  # ridge penalties on standardised features, chosen inside each fit
HUBER_EPSILON = 1.35
REPEATS, FOLDS = 20, 5
INTERVAL_QUANTILES = (0.1, 0.9)
SEED = 0


@dataclass(frozen=True)
class Candidate:
    spec: F.CycleLifeSpec
    feature_set: str
    regressor: str

    @property
    def refs(self) -> tuple[F.FeatureRef, ...]:
        return F.refs_for(F.FEATURE_SETS[self.feature_set], self.spec)

    @property
    def label(self) -> str:
        return f"{self.feature_set}@{self.spec.early_cycle}/{self.spec.half_width}:{self.regressor}"


def candidates() -> list[Candidate]:
    return [Candidate(s, f, r) for s in SPECS for f in F.FEATURE_SETS for r in REGRESSORS]


# ---------------------------------------------------------------------------------------------- regressions
def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = x.mean(axis=0), x.std(axis=0)
    return mu, np.where(sd > 0, sd, 1.0)


def _row_median(v: np.ndarray, n_in: np.ndarray) -> np.ndarray:
    """Median of each row's first ``n_in`` values in sorted order (NaN sorts last): ``np.nanmedian(v, axis=1,
    keepdims=True)`` to the bit, without its masked-array path (half of the selection's time)."""
    s = np.sort(v, axis=1)
    return (np.take_along_axis(s, (n_in - 1) // 2, axis=1) + np.take_along_axis(s, n_in // 2, axis=1)) / 2


def _irls(a: np.ndarray, y: np.ndarray, mask: np.ndarray, huber: bool, iterations: int = 50) -> np.ndarray:
    """Least squares (OLS) or the Huber M-estimate (IRLS, residual scale 1.4826 x MAD) of y on the columns of
    ``a``, for several fits at once: ``mask`` [fits, cells] is 1 where a cell takes part in a fit. Returns
    coefficients [fits, columns]."""

    def solve(w: np.ndarray) -> np.ndarray:
        gram = np.einsum("fn,ni,nj->fij", w, a, a)
        return np.linalg.solve(gram, np.einsum("fn,ni,n->fi", w, a, y)[..., None])[..., 0]

    b = solve(mask)
    n_in = np.count_nonzero(mask > 0, axis=1)[:, None]
    for _ in range(iterations if huber else 0):
        r = np.where(mask > 0, y[None, :] - b @ a.T, np.nan)
        med = _row_median(r, n_in)
        scale = 1.4826 * _row_median(np.abs(r - med), n_in) + 1e-12
        w = mask * np.minimum(1.0, HUBER_EPSILON * scale / np.maximum(np.nan_to_num(np.abs(r)), 1e-12))
        new = solve(w)
        done = float(np.max(np.abs(new - b))) < 1e-8  # standardised units: far below any effect
        b = new
        if done:
            break
    return b


def _ridge(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Ridge on standardised z; the penalty minimises the closed-form leave-one-out error over ``ALPHAS``."""
    ym = float(y.mean())
    yc = y - ym
    u, s, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
    uy = u.T @ yc
    shrink = s[None, :] ** 2 / (s[None, :] ** 2 + ALPHAS[:, None])  # [alphas, rank]
    hat = 1.0 / len(y) + shrink @ (u**2).T  # leverage of each cell [alphas, cells]
    loo = (yc[None, :] - (shrink * uy[None, :]) @ u.T) / (1.0 - hat)
    alpha = ALPHAS[int(np.argmin(np.mean(loo**2, axis=1)))]
    b = vt.T @ ((s / (s**2 + alpha)) * uy)
    return ym - float(z.mean(axis=0) @ b), b


def _fit_masked(regressor: str, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(intercepts [fits], coefficients [fits, features]) of log10 life on the raw features, one fit per row of
    ``mask``. Features are standardised on the cells of each fit (ridge's penalty needs it; for OLS and Huber,
    whose fits do not depend on the scaling, it only keeps the equations well conditioned)."""
    intercepts, coefs = np.empty(len(mask)), np.empty((len(mask), x.shape[1]))
    if regressor == "ridge":
        for i, m in enumerate(mask.astype(bool)):
            mu, sd = _standardise(x[m])
            c, b = _ridge((x[m] - mu) / sd, y[m])
            coefs[i] = b / sd
            intercepts[i] = c - float(mu @ coefs[i])
        return intercepts, coefs
    if regressor not in ("ols", "huber"):
        raise ValueError(f"unknown regressor {regressor!r} (known: {', '.join(REGRESSORS)})")
    mu, sd = _standardise(x)
    b = _irls(np.column_stack([np.ones(len(y)), (x - mu) / sd]), y, mask.astype(float), regressor == "huber")
    coefs = b[:, 1:] / sd
    return b[:, 0] - coefs @ mu, coefs


def fit_linear(regressor: str, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """(intercept, coefficients) of log10 life on the raw features x [cells, features], fitted on every cell."""
    c, b = _fit_masked(regressor, x, y, np.ones((1, len(y))))
    return float(c[0]), b[0]


# ---------------------------------------------------------------------------------------------- cross-validation
def grouped_folds(groups: np.ndarray, repeats: int = REPEATS, k: int = FOLDS, seed: int = SEED) -> list[np.ndarray]:
    """Per repeat, the fold of each cell: the distinct groups are shuffled and dealt round-robin to k folds."""
    groups = np.asarray(groups)
    distinct = np.unique(groups)
    k = min(k, distinct.size)
    out = []
    for r in range(repeats):
        order = np.random.default_rng(seed + r).permutation(distinct)
        fold_of = {g: i % k for i, g in enumerate(order)}
        out.append(np.array([fold_of[g] for g in groups]))
    return out


def oof_log10(regressor: str, x: np.ndarray, y: np.ndarray, folds: list[np.ndarray]) -> np.ndarray:
    """Out-of-fold log10 predictions [repeats, cells]."""
    held = [(r, fold == f) for r, fold in enumerate(folds) for f in np.unique(fold)]
    c, b = _fit_masked(regressor, x, y, np.array([~test for _, test in held], dtype=float))
    out = np.empty((len(folds), len(y)))
    for (r, test), ci, bi in zip(held, c, b):
        out[r, test] = ci + x[test] @ bi
    return out


def rmse(pred: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(actual)) ** 2)))


def score(oof: np.ndarray, life: np.ndarray, folds: list[np.ndarray]) -> dict[str, float]:
    per_repeat = [rmse(10**p, life) for p in oof]
    per_fold = [rmse(10 ** p[fold == f], life[fold == f]) for p, fold in zip(oof, folds) for f in np.unique(fold)]
    k = len(np.unique(folds[0]))
    return {
        "cv_rmse_cycles": float(np.mean(per_repeat)),
        "cv_rmse_sd_over_repeats": float(np.std(per_repeat)),
        "fold_rmse_mean": float(np.mean(per_fold)),
        "fold_rmse_sd": float(np.std(per_fold)),
        "se": float(np.std(per_fold) / np.sqrt(k)),
    }


# ---------------------------------------------------------------------------------------------- the rule
@dataclass
class Selection:
    members: list[Candidate]
    table: list[dict[str, Any]]
    oof: np.ndarray  # the ensemble's out-of-fold log10 predictions [repeats, cells]
    threshold_cycles: float
    best: str
    rule: str = field(
        default="average (log10) of every candidate whose grouped-CV RMSE is within one standard error of the best"
    )


def select(
    features: dict[F.FeatureRef, np.ndarray],
    life: np.ndarray,
    groups: np.ndarray,
    repeats: int = REPEATS,
    k: int = FOLDS,
    seed: int = SEED,
) -> Selection:
    """Score every candidate on the training cells and apply the rule. ``features`` maps each input to its column."""
    y = np.log10(life)
    folds = grouped_folds(groups, repeats, k, seed)
    table, oofs = [], {}
    for cand in candidates():
        x = np.column_stack([features[r] for r in cand.refs])
        row: dict[str, Any] = {
            "candidate": cand.label,
            "early_cycle": cand.spec.early_cycle,
            "half_width": cand.spec.half_width,
            "feature_set": cand.feature_set,
            "regressor": cand.regressor,
            "n_features": len(cand.refs),
        }
        if not np.all(np.isfinite(x)):
            table.append({**row, "cv_rmse_cycles": None, "note": "features not finite on some training cell"})
            continue
        oofs[cand] = oof_log10(cand.regressor, x, y, folds)
        table.append({**row, **score(oofs[cand], life, folds)})
    scored = [r for r in table if r.get("cv_rmse_cycles") is not None]
    best = min(scored, key=lambda r: (r["cv_rmse_cycles"], r["n_features"], REGRESSOR_RANK[r["regressor"]]))
    threshold = best["cv_rmse_cycles"] + best["se"]
    by_label = {c.label: c for c in oofs}
    members = [by_label[r["candidate"]] for r in scored if r["cv_rmse_cycles"] <= threshold]
    for r in table:
        r["in_ensemble"] = r["candidate"] in {m.label for m in members}
    oof = np.mean([oofs[m] for m in members], axis=0)
    return Selection(members, table, oof, threshold, best["candidate"])


def ensemble_oof(
    members: list[Candidate],
    features: dict[F.FeatureRef, np.ndarray],
    life: np.ndarray,
    groups: np.ndarray,
    repeats: int = REPEATS,
    k: int = FOLDS,
    seed: int = SEED,
) -> np.ndarray:
    """Out-of-fold log10 predictions [repeats, cells] of a fixed ensemble (members chosen elsewhere)."""
    y, folds = np.log10(life), grouped_folds(groups, repeats, k, seed)
    return np.mean(
        [oof_log10(m.regressor, np.column_stack([features[r] for r in m.refs]), y, folds) for m in members], axis=0
    )


def by_label(labels: list[str]) -> list[Candidate]:
    known = {c.label: c for c in candidates()}
    unknown = [x for x in labels if x not in known]
    if unknown:
        raise ValueError(f"unknown cycle-life candidate(s) {unknown}")
    return [known[x] for x in labels]


def interval_offsets(oof: np.ndarray, y_log10: np.ndarray) -> tuple[float, float]:
    """log10 offsets (lower, upper) from the out-of-fold residuals: the INTERVAL_QUANTILES of actual - predicted."""
    res = (y_log10[None, :] - oof).ravel()
    lo, hi = np.quantile(res, INTERVAL_QUANTILES)
    return float(lo), float(hi)


@dataclass
class LinearLog10Model:
    """log10(cycle life) = intercept + x @ coef; interval = that + (lower, upper) offsets."""

    refs: tuple[F.FeatureRef, ...]
    intercept: float
    coef: np.ndarray
    offsets: tuple[float, float] = (0.0, 0.0)

    def log10(self, x: np.ndarray) -> np.ndarray:
        return self.intercept + np.atleast_2d(x) @ self.coef

    def predict(self, x: np.ndarray) -> np.ndarray:
        return 10 ** self.log10(x)

    def interval(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = self.log10(x)
        return 10 ** (z + self.offsets[0]), 10 ** (z + self.offsets[1])


def fit_ensemble(members: list[Candidate], features: dict[F.FeatureRef, np.ndarray], y: np.ndarray) -> LinearLog10Model:
    """Fit each member on all cells and fold the average into one linear model over the union of their inputs."""
    refs = tuple(sorted({r for m in members for r in m.refs}, key=lambda r: r.key))
    pos = {r: i for i, r in enumerate(refs)}
    coef = np.zeros(len(refs))
    intercept = 0.0
    for m in members:
        c, b = fit_linear(m.regressor, np.column_stack([features[r] for r in m.refs]), y)
        intercept += c / len(members)
        for r, v in zip(m.refs, b):
            coef[pos[r]] += v / len(members)
    return LinearLog10Model(refs, intercept, coef)


def all_features(qdlin: np.ndarray) -> dict[F.FeatureRef, np.ndarray]:
    """Every input any candidate uses, computed once per window."""
    refs = sorted({r for c in candidates() for r in c.refs}, key=lambda r: r.key)
    x = F.qdlin_features(qdlin, refs)
    return {r: x[:, i] for i, r in enumerate(refs)}
