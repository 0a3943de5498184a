"""The models shipped in agent/models are what the pipeline builds: rebuild with fixed seeds and compare."""

from __future__ import annotations

import json

import pytest

from agent.inference import CycleLifePredictor, ModelError, SohForecaster, default_model_path
from cloud.build_defaults import build


def test_rebuild_gives_the_shipped_models_and_metrics(tmp_path, shared_data):
    metas = {m["name"]: m for m in build(tmp_path / "models", tmp_path / "reports", shared_data)}
    for name in ("cycle_life", "soh"):
        shipped = json.loads(default_model_path(name).with_suffix(".json").read_text())
        rebuilt = json.loads((tmp_path / "models" / f"{name}.json").read_text())
        assert rebuilt["version"] == shipped["version"] == metas[name]["version"]
        assert rebuilt["onnx_sha256"] == shipped["onnx_sha256"]
        _close(rebuilt["metrics"], shipped["metrics"])
        assert rebuilt["training_data"]["sha256"] == shipped["training_data"]["sha256"]
    cl = json.loads(default_model_path("cycle_life").with_suffix(".json").read_text())
    # The shipped cycle-life model is refit on train + test1; the primary-test figure is the train-only fit's.
    honest = cl["metrics"]["primary_test_from_train_only_fit"]
    assert honest["test_rmse_cycles"] < 85 < honest["baseline_variance_test_rmse_cycles"]
    assert honest["n_train_cells"] == 41 and honest["test_n_cells"] == 42
    report = json.loads((tmp_path / "reports" / "cycle_life_evaluation.json").read_text())
    assert report["model"]["version"] == honest["version"] and not report["scored_split_in_training"]
    assert [s["n_cells"] for s in cl["training_data"]["splits"]] == [41, 42]
    assert (tmp_path / "reports" / "cycle_life_evaluation.png").exists()


def _close(a, b, path="metrics"):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


def test_shipped_models_load_and_refuse_a_mismatched_pair(tmp_path):
    assert CycleLifePredictor().version.startswith("cycle-life-v1-")
    assert SohForecaster().version.startswith("soh-v1-")
    onnx_bytes = default_model_path("soh").read_bytes()
    (tmp_path / "soh.onnx").write_bytes(onnx_bytes)
    (tmp_path / "soh.json").write_text(default_model_path("cycle_life").with_suffix(".json").read_text())
    with pytest.raises(ModelError, match="does not match its metadata"):
        SohForecaster(tmp_path / "soh.onnx")
