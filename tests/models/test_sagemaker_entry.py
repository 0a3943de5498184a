"""SageMaker script mode, minus AWS: the entry points run as SageMaker starts them (env vars, hyperparameters as
arguments, another working directory). The AWS side itself cannot run here and is not mocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.models.conftest import severson_dir

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, env: dict, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    e.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "cloud" / "sagemaker" / script), *args],
        env={**e, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cycle_life_entry_point(tmp_path):
    env = {
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_CHANNEL_TRAIN": str(severson_dir()),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "output"),
    }
    p = _run("train_cycle_life.py", env, ["--seed", "0", "--exclude-file", "cell22.csv"], tmp_path)
    assert p.returncode == 0, p.stderr
    meta = json.loads((tmp_path / "model" / "cycle_life.json").read_text())
    assert (tmp_path / "model" / "cycle_life.onnx").exists()
    assert (tmp_path / "output" / "cycle_life_evaluation.png").exists()
    lines = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line and " " not in line)
    assert abs(float(lines["test_rmse_cycles"]) - meta["metrics"]["test_rmse_cycles"]) < 1e-3
    assert meta["metrics"]["test_excluded"] == ["cell22.csv"]


def test_soh_entry_point(tmp_path, nasa):
    from cloud.datasets.capacity import write_capacity_csv

    channel = tmp_path / "train"
    write_capacity_csv(channel / "capacity.csv", nasa)
    env = {"SM_MODEL_DIR": str(tmp_path / "model"), "SM_CHANNEL_TRAIN": str(channel)}
    p = _run("train_soh.py", env, ["--nominal-ah", "2.0", "--eol-fraction", "0.7"], tmp_path)
    assert p.returncode == 0, p.stderr
    meta = json.loads((tmp_path / "model" / "soh.json").read_text())
    assert set(meta["metrics"]["leave_one_cell_out"]["cells"]) == {"B0005", "B0006", "B0007", "B0018"}
    assert "leave_one_cell_out.rmse_ah=" in p.stdout
    missing = _run("train_soh.py", {"SM_MODEL_DIR": str(tmp_path / "m2")}, [], tmp_path)
    assert missing.returncode == 2 and "SM_CHANNEL_TRAIN" in missing.stderr
