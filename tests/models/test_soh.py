"""SOH forecaster on NASA PCoE: baseline reproduced, leave-one-cell-out results, ONNX parity, the command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cloud import evaluate, soh
from cloud.datasets.capacity import read_capacity_csv, write_capacity_csv

PUBLISHED_BASELINE_MAH = {"B0005": 46, "B0006": 186, "B0007": 27, "B0018": 47}


@pytest.fixture(scope="module")
def loo(nasa):
    return evaluate.evaluate_soh(nasa, 2.0, 0.7, 0.5)


def test_baseline_reproduces_the_issue_numbers(loo):
    got = {c["cell"]: c["baseline_rmse_ah"] * 1000 for c in loo["cells"]}
    for cell, mah in PUBLISHED_BASELINE_MAH.items():
        assert got[cell] == pytest.approx(mah, abs=1.0), (cell, got[cell])


def test_forecast_beats_baseline_for_every_cell(loo):
    # Measured: ratios 0.93 / 0.47 / 0.64 / 0.60. The goal (<= 0.5 for every cell) is met for B0006 only; B0007's
    # and B0018's goals lie at the noise floor (even a cubic fitted to their future in hindsight barely reaches them).
    for c in loo["cells"]:
        assert c["rmse_ah"] < c["baseline_rmse_ah"], c
        assert c["noise_floor_rmse_ah"] < c["rmse_ah"]
    by = {c["cell"]: c for c in loo["cells"]}
    assert by["B0006"]["ratio_to_baseline"] <= 0.5
    assert loo["goal_half_baseline_met_for"] == ["B0006"]
    assert loo["rmse_ah"] < 0.6 * loo["baseline_rmse_ah"]
    # Every fold was fitted without its held-out cell.
    for f in loo["folds"]:
        assert f["held_out"] not in f["training_cells"] and len(f["training_cells"]) == 3


def test_onnx_matches_numpy_model(nasa, tmp_path):
    model = soh.fit(nasa[:3])
    soh.export(model, tmp_path, "s", {})
    from agent.inference import SohForecaster

    f = SohForecaster(tmp_path / "s.onnx")
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(0.5, 2.2, 300), rng.uniform(-0.02, 0.002, 300)])
    x[:5, 1] = 0.0  # not fading: flat forecast, no end of life
    h = np.arange(0, 400, dtype=float)
    eol = rng.uniform(0.3, 2.0, 300)
    cap, ahead = f.forecast(x, h, eol)
    np.testing.assert_allclose(cap, model.forecast(x, h), atol=1e-5, rtol=1e-5)
    ref = model.eol_ahead(x, eol)
    finite = ref < 1e12
    np.testing.assert_allclose(ahead[finite], ref[finite], rtol=1e-5, atol=1e-5)
    above = x[:5, 0] > eol[:5]
    assert above.any() and np.all(ahead[:5][above] > 1e12)  # slope 0 and above the threshold: never
    assert np.all(ahead[x[:, 0] <= eol] == 0)  # already below the threshold


def test_evaluate_soh_command(nasa, tmp_path):
    csv_path = tmp_path / "nasa.csv"
    write_capacity_csv(csv_path, nasa)
    assert [len(h) for h in read_capacity_csv(csv_path)] == [168, 168, 168, 132]
    cmd = [
        sys.executable,
        "-m",
        "agent.cli",
        "model",
        "evaluate",
        "soh",
        "--capacity-csv",
        str(csv_path),
        "--nominal-ah",
        "2.0",
        "--eol-fraction",
        "0.7",
        "--from-fraction",
        "0.5",
        "--json",
        "--out-dir",
        str(tmp_path / "rep"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["mode"] == "leave-one-cell-out" and r["eol_capacity_ah"] == pytest.approx(1.4)
    assert {c["cell"] for c in r["cells"]} == set(PUBLISHED_BASELINE_MAH)
    for c in r["cells"]:
        assert {"rmse_ah", "baseline_rmse_ah", "eol_cycle_predicted", "eol_cycle_actual"} <= set(c)
    b5 = next(c for c in r["cells"] if c["cell"] == "B0005")
    assert b5["eol_cycle_actual"] == 125 and b5["eol_cycle_predicted"] > b5["origin_cycle"]
    assert r["rmse_ah"] > 0 and r["baseline_rmse_ah"] > r["rmse_ah"]
    assert (tmp_path / "rep" / "soh_evaluation.png").stat().st_size > 10_000
