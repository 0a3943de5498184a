"""Early cycle-life model on the Severson data: baseline reproduced, goal, ONNX parity, the evaluate command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cloud import cyclelife, onnx_export
from tests.models.conftest import severson_dir


@pytest.fixture(scope="module")
def trained(severson):
    train, _ = severson
    return cyclelife.train(train, seed=0)


def test_variance_baseline_reproduces_the_published_numbers(severson):
    train, test = severson
    base = cyclelife.train_baseline(train)
    pred = base.predict(cyclelife.features(test, base.spec, base.feature_names))
    assert base.metrics["train_rmse_cycles"] == pytest.approx(103.6, abs=0.5)  # paper: 103
    assert cyclelife.rmse(pred, test.cycle_life) == pytest.approx(138.3, abs=0.5)  # paper: 138
    assert test.cycle_life.size == 42 and "cell22.csv" not in test.files


def test_model_beats_goal_on_primary_test_and_selection_used_train_only(trained, severson):
    train, test = severson
    pred = trained.predict(cyclelife.features(test, trained.spec, trained.feature_names))
    rmse = cyclelife.rmse(pred, test.cycle_life)
    assert rmse < 85, f"primary-test RMSE {rmse:.1f} cycles (goal < 85)"
    # The selection table is computed from the training cells only and its winner is what was fitted.
    best = min(trained.candidates, key=lambda r: (round(r["loo_rmse_cycles"], 6), r["n_features"]))
    assert (best["early_cycle"], best["half_width"], best["feature_set"]) == (
        trained.spec.early_cycle,
        trained.spec.half_width,
        trained.feature_set,
    )
    assert trained.metrics["n_train_cells"] == train.cycle_life.size == 41


def test_onnx_matches_scikit_learn(trained, severson, tmp_path):
    from agent.inference import CycleLifePredictor

    _, test = severson
    meta = cyclelife.export(trained, tmp_path, "cl", {"note": "test"})
    x = cyclelife.features(test, trained.spec, trained.feature_names)
    onnx_pred = CycleLifePredictor(tmp_path / "cl.onnx").predict(x)
    np.testing.assert_allclose(onnx_pred, trained.predict(x), rtol=1e-5, atol=1e-5)
    # Off the data too: random feature rows across and beyond the training range.
    rng = np.random.default_rng(0)
    lo = np.array([meta["feature_ranges"][n][0] for n in trained.feature_names])
    hi = np.array([meta["feature_ranges"][n][1] for n in trained.feature_names])
    xr = lo + (hi - lo) * rng.uniform(-0.5, 1.5, (200, lo.size))
    sess = onnx_export.session(tmp_path / "cl.onnx")
    out = sess.run(["log10_cycle_life"], {"features": xr})[0][:, 0]
    np.testing.assert_allclose(out, trained.pipeline.predict(xr), atol=1e-5)
    assert meta["features"][0]["unit"] and meta["version"].startswith("cycle-life-v1-")


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
    assert report["rmse_cycles"] < 85 and report["baseline"]["rmse_cycles"] == pytest.approx(138.3, abs=0.5)
    assert {"file", "actual", "predicted", "baseline_predicted"} <= set(report["cells"][0])
    assert report["mape_pct"] < report["baseline"]["mape_pct"]
    assert (tmp_path / "cycle_life_evaluation.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "cycle_life_evaluation.json").read_text())["rmse_cycles"] == report["rmse_cycles"]
    bad = subprocess.run(cmd[:-5] + ["--exclude-file", "cell999.csv"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "cell999.csv" in bad.stderr
