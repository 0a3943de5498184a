"""Early cycle-life model on the Severson data: baseline reproduced, goal, ONNX parity, the evaluate command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cloud import cyclelife, onnx_export
from cloud import cyclelife_select as S
from tests.models.conftest import severson_dir


@pytest.fixture(scope="module")
def policies(severson, shared_data):
    from cloud.datasets.severson import severson_root, split_policies

    train, _ = severson
    return split_policies(severson_root(shared_data), "train", train.cycle_life).policy


@pytest.fixture(scope="module")
def trained(severson, policies):
    train, _ = severson
    return cyclelife.train(train, policies, seed=0)


def test_variance_baseline_reproduces_the_published_numbers(severson):
    train, test = severson
    base = cyclelife.train_baseline(train)
    pred = base.predict(cyclelife.features(test, base.spec, base.feature_names))
    assert base.metrics["train_rmse_cycles"] == pytest.approx(103.6, abs=0.5)  # paper: 103
    assert cyclelife.rmse(pred, test.cycle_life) == pytest.approx(138.3, abs=0.5)  # paper: 138
    assert test.cycle_life.size == 42 and "cell22.csv" not in test.files


def test_selection_follows_the_rule_on_the_training_cells_only(trained, policies):
    sel = trained.selection
    table = sel["table"]
    assert len(table) == len(S.candidates()) and trained.metrics["n_train_cells"] == 41
    assert sel["grouping"] == "charging policy" and sel["n_groups"] == len(set(policies)) == 40
    # The rule, re-derived from the recorded table: every candidate within one standard error of the best.
    scored = [r for r in table if r["cv_rmse_cycles"] is not None]
    best = min(scored, key=lambda r: r["cv_rmse_cycles"])
    members = {r["candidate"] for r in scored if r["cv_rmse_cycles"] <= best["cv_rmse_cycles"] + best["se"]}
    assert members == set(sel["members"]) == {r["candidate"] for r in table if r["in_ensemble"]}
    assert best["candidate"] == sel["best_single"] and 1 < len(members) < len(scored)
    # The ensemble is one linear model over the union of its members' inputs.
    assert {r.key for r in trained.refs} == {ref.key for c in S.candidates() if c.label in members for ref in c.refs}


def test_primary_test_goal_and_interval(trained, severson):
    _, test = severson
    x = trained.features(test)
    pred = trained.predict(x)
    lo, hi = trained.interval(x)
    rmse = cyclelife.rmse(pred, test.cycle_life)
    assert rmse < 85, f"primary-test RMSE {rmse:.1f} cycles (goal < 85)"
    assert np.all(lo < pred) and np.all(pred < hi)
    cover = cyclelife.coverage(lo, hi, test.cycle_life)
    assert 0.6 <= cover <= 0.97, f"80% interval covers {cover:.0%} of the primary test cells"
    assert 0.7 <= trained.metrics["cv_interval_coverage"] <= 0.9


def test_grouped_folds_never_split_a_group_and_are_reproducible():
    groups = np.array(["a", "b", "a", "c", "d", "b", "e", "f", "a", "g"])
    folds = S.grouped_folds(groups, repeats=6, k=3, seed=5)
    assert len(folds) == 6
    for fold in folds:
        for g in np.unique(groups):
            assert np.unique(fold[groups == g]).size == 1, f"group {g} split across folds"
        assert set(np.unique(fold)) == {0, 1, 2}
    again = S.grouped_folds(groups, repeats=6, k=3, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))
    assert not all(np.array_equal(a, b) for a, b in zip(folds, S.grouped_folds(groups, 6, 3, seed=6)))


def test_regressions_match_scikit_learn_and_huber_resists_outliers():
    from sklearn.linear_model import LinearRegression, RidgeCV
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 3)) * [1.0, 10.0, 0.01]
    y = 3.0 + x @ [0.2, -0.01, 5.0] + rng.normal(0, 0.05, 40)
    c, b = S.fit_linear("ols", x, y)
    ref = LinearRegression().fit(x, y)
    np.testing.assert_allclose(b, ref.coef_, rtol=1e-9)
    assert c == pytest.approx(ref.intercept_, rel=1e-9)
    z = StandardScaler().fit_transform(x)
    cv = RidgeCV(alphas=S.ALPHAS).fit(z, y)
    c, b = S.fit_linear("ridge", x, y)
    np.testing.assert_allclose(c + x @ b, cv.predict(z), rtol=1e-9)
    # Ten gross outliers: Huber keeps the slope, OLS does not.
    yo = y.copy()
    yo[:10] += 2.0 * np.sign(x[:10, 0])
    _, b_ols = S.fit_linear("ols", x, yo)
    _, b_hub = S.fit_linear("huber", x, yo)
    assert abs(b_hub[0] - 0.2) < 0.05 < abs(b_ols[0] - 0.2)
    with pytest.raises(ValueError, match="unknown regressor"):
        S.fit_linear("lasso", x, y)


def test_onnx_matches_the_numpy_model_point_and_interval(trained, severson, tmp_path):
    from agent.inference import CycleLifePredictor

    train, test = severson
    meta = cyclelife.export(trained, tmp_path, "cl", {"note": "test"})
    predictor = CycleLifePredictor(tmp_path / "cl.onnx")
    x = predictor.features_qdlin(test.qdlin)
    np.testing.assert_allclose(x, trained.features(test), rtol=1e-12)
    life, lower, upper = predictor.predict_interval(x)
    lo, hi = trained.interval(x)
    np.testing.assert_allclose(life, trained.predict(x), rtol=1e-9)
    np.testing.assert_allclose(lower, lo, rtol=1e-9)
    np.testing.assert_allclose(upper, hi, rtol=1e-9)
    assert predictor.quantiles == (0.1, 0.9) and meta["interval"]["quantiles"] == [0.1, 0.9]
    # Off the data too: random feature rows across and beyond the training range.
    rng = np.random.default_rng(0)
    lo_r = np.array([meta["feature_ranges"][r.key][0] for r in trained.refs])
    hi_r = np.array([meta["feature_ranges"][r.key][1] for r in trained.refs])
    xr = lo_r + (hi_r - lo_r) * rng.uniform(-0.5, 1.5, (200, lo_r.size))
    sess = onnx_export.session(tmp_path / "cl.onnx")
    out = sess.run(["log10_cycle_life"], {"features": xr})[0][:, 0]
    np.testing.assert_allclose(out, trained.linear.log10(xr), atol=1e-9)
    assert predictor.extrapolating(xr).any() and not predictor.extrapolating(trained.features(train)).any()
    assert meta["features"][0]["unit"] and meta["version"].startswith("cycle-life-v1-")
    assert len(meta["selection_table"]) == len(S.candidates())


def test_train_command_refuses_a_groups_file_that_does_not_fit(tmp_path):
    bad = tmp_path / "groups.txt"
    bad.write_text("policy-a\npolicy-b\n")  # two labels for 41 cells
    cmd = [sys.executable, "-m", "agent.cli", "model", "train", "cycle-life", "--groups", str(bad)]
    proc = subprocess.run(cmd + ["--out", str(tmp_path / "m")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "2 group labels for 41 cells" in proc.stderr
    assert not (tmp_path / "m").exists()


def test_evaluate_command_json(tmp_path):
    root = severson_dir()
    cmd = [
        sys.executable,
        "-m",
        "agent.cli",
        "model",
        "evaluate",
        "cycle-life",
        "--qdlin-dir",
        str(root / "test1"),
        "--lives",
        str(root / "cycle_lives" / "test1_cycle_lives.csv"),
        "--exclude-file",
        "cell22.csv",
        "--json",
        "--out-dir",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n_cells"] == 42 and len(report["cells"]) == 42
    # The shipped model was refit on train + test1, and the report says so (its held-out figure is in the metadata).
    assert report["scored_split_in_training"] is True
    assert report["rmse_cycles"] < 85 and report["baseline"]["rmse_cycles"] == pytest.approx(138.3, abs=0.5)
    assert {"file", "actual", "predicted", "lower", "upper", "baseline_predicted"} <= set(report["cells"][0])
    inside = [c["lower"] <= c["actual"] <= c["upper"] for c in report["cells"]]
    assert report["interval"]["coverage"] == pytest.approx(np.mean(inside))
    assert report["interval"]["quantiles"] == [0.1, 0.9] and report["interval"]["nominal_coverage"] == pytest.approx(
        0.8
    )
    assert report["mape_pct"] < report["baseline"]["mape_pct"]
    assert (tmp_path / "cycle_life_evaluation.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "cycle_life_evaluation.json").read_text())["rmse_cycles"] == report["rmse_cycles"]
    bad = subprocess.run(cmd[:-5] + ["--exclude-file", "cell999.csv"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "cell999.csv" in bad.stderr


def test_compare_two_models_on_train_and_test1(shared_data, tmp_path):
    """``cyclelife_study --compare`` scores both models on the 83 cells the shipped one was fitted on (train + test1
    without cell22): its RMSE there is the metadata's training figure, and a model differs from itself by nothing."""
    import shutil

    from agent.inference import default_model_path
    from cloud.cyclelife_study import compare

    shipped = default_model_path("cycle_life")
    meta = json.loads(shipped.with_suffix(".json").read_text())
    for ext in (".onnx", ".json"):  # the same model under another path
        shutil.copy(shipped.with_suffix(ext), tmp_path / f"cycle_life{ext}")
    report = compare(shipped, tmp_path / "cycle_life.onnx", shared_data)
    assert report["n_cells"] == meta["metrics"]["n_train_cells"] == 83
    assert report["models"] == [meta["version"]] * 2
    assert report["rmse_cycles"][0] == pytest.approx(meta["metrics"]["train_rmse_cycles"], rel=1e-9)
    assert report["rms_difference_cycles"] == 0 and report["residual_correlation_log10"] == pytest.approx(1.0)
