"""SOH forecaster: hostile capacity files, a knee that sister cells announce, NASA leave-one-cell-out, the model file's
checks, batching, and the commands. Baumhoefer's 48-cell figures are asserted where the shipped model is rebuilt
(tests/models/test_default_models.py), which runs that evaluation once."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from agent.inference import SohForecaster, SohModelError
from cloud import evaluate, soh
from cloud.datasets.capacity import CapacityHistory, read_capacity_csv, write_capacity_csv

PUBLISHED_BASELINE_MAH = {"B0005": 46, "B0006": 186, "B0007": 27, "B0018": 47}
DAMPED_TREND_MAH = {"B0005": 42.7, "B0006": 87.5, "B0007": 17.6, "B0018": 28.2}  # the previous model (v1)


def knee_fleet(n: int = 6, seed: int = 0, dense: bool = True) -> list[CapacityHistory]:
    """Sister cells on one ageing path, each ahead or behind the others (production spread): slow linear fade, then a
    knee at 600 cycles of the path, measured every cycle with noise (or every 100 cycles)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shift = -75.0 + 150.0 * i / (n - 1)
        cycles = np.arange(0, 1300, 1 if dense else 100)
        t = cycles + shift
        q = 2.0 * (1 - 1e-4 * t - 0.9 * np.clip((t - 600) / 700, 0, None) ** 2)
        q = q + rng.normal(0, 0.003 if dense else 0.001, q.size)
        out.append(CapacityHistory(f"k{i}", cycles, q))
    return out


# ---------------------------------------------------------------------------------------------- reading files
def test_hostile_capacity_file_is_cleaned_and_counted(tmp_path):
    rows = ["cell,cycle,capacity_ah"]
    cycles = list(range(0, 1000, 50))
    for c in cycles:
        rows.append(f"a,{c},{2.0 - 0.0004 * c:.5f}")
    rows += ["a,500,1.8010", "a,500,1.7990"]  # a checkpoint measured three times
    rows += ["a,1000,", "a,1050,nan", "a,1100,-1.0", "a,1150,0"]  # no capacity in four ways
    rows += ["a,1200,0.35"]  # a partial discharge: far below the trend
    rows += ["b,0,1.0", "b,10,0.99", "b,20,0.98", "b,30,0.97"]
    (tmp_path / "lab.csv").write_text("\n".join(rows) + "\n")
    a, b = read_capacity_csv(tmp_path / "lab.csv")
    assert a.cell == "a" and b.cell == "b" and len(b) == 4
    assert a.meta["cleaning"] == {"rows": 27, "not_a_capacity": 4, "repeats_combined": 2, "outliers": 1}
    assert a.cycle.tolist() == cycles  # 1200 (the outlier) is gone, 500 appears once
    assert a.capacity_ah[cycles.index(500)] == pytest.approx((1.8 + 1.801 + 1.799) / 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cell,cycle\na,1\n", "missing column"),
        ("cell,cycle,capacity_ah\na,x,1.0\n", ":2:"),
        ("cell,cycle,capacity_ah\na,1.5,1.0\n", "not a whole number"),
        ("cell,cycle,capacity_ah\n,1,1.0\n", "empty cell name"),
        ("cell,cycle,capacity_ah\n", "no rows"),
        ("cell,cycle,capacity_ah\na,1,\na,2,nan\n", "no usable capacity"),
    ],
)
def test_broken_capacity_files_are_clear_errors(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_capacity_csv(tmp_path / "bad.csv")


def test_baumhofer_file_is_read_not_refused(shared_data):
    cells = read_capacity_csv(shared_data / "baumhofer2014" / "capacity_checkpoints.csv")
    assert len(cells) == 48
    total = {k: sum(c.meta["cleaning"][k] for c in cells) for k in ("repeats_combined", "not_a_capacity", "outliers")}
    assert total == {"repeats_combined": 6, "not_a_capacity": 1, "outliers": 0}
    assert all(np.all(np.diff(c.cycle) > 0) for c in cells)


# ---------------------------------------------------------------------------------------------- the method
@pytest.mark.parametrize("dense", [True, False])
def test_sister_cells_announce_the_knee(dense):
    """From half of each history (before or at the start of the knee), the forecast follows the knee that the
    sister cells went through; the linear baseline cannot. A decelerating trend model could not either."""
    fleet = knee_fleet(dense=dense)
    r = evaluate.evaluate_soh(fleet, 2.0, 0.7, 0.5)
    for c in r["cells"]:
        assert c["ratio_to_baseline"] < 0.25, c
        assert abs(c["eol_error_cycles"]) < 40, c
        assert c["eol_cycle_lower"] <= c["eol_cycle_predicted"] <= c["eol_cycle_upper"]
    assert r["interval_coverage"] > 0.5
    assert [f["held_out"] not in f["training_cells"] for f in r["folds"]] == [True] * len(fleet)


def _model(tmp_path, cells, nominal=2.0, name="m", coarse=False):
    soh.export(soh.fit(cells, nominal, coarse=coarse), tmp_path, name, {"cells": [c.cell for c in cells]})
    return SohForecaster(tmp_path / f"{name}.refs")


def test_forecast_is_batched_order_free_and_bounded(tmp_path):
    fleet = knee_fleet()
    f = _model(tmp_path, fleet[1:])
    k = fleet[0]
    cut = [300, 500, 700, 900]
    width = 1000
    cyc = np.full((len(cut), width), np.nan)
    cap = np.full((len(cut), width), np.nan)
    for i, n in enumerate(cut):
        cyc[i, width - n :], cap[i, width - n :] = k.cycle[:n], k.capacity_ah[:n]
    h = np.arange(1, 201, dtype=float)
    batch = f.forecast(cyc, cap, 2.0, h, 1.4)
    for i, n in enumerate(cut):
        perm = np.random.default_rng(i).permutation(n)
        one = f.forecast(k.cycle[None, perm], k.capacity_ah[None, perm], 2.0, h, 1.4)  # columns in any order
        np.testing.assert_allclose(one.capacity_ah[0], batch.capacity_ah[i], rtol=1e-12)
        np.testing.assert_allclose(one.eol_cycle[0], batch.eol_cycle[i], rtol=1e-12)
    assert np.all(batch.lower_ah <= batch.capacity_ah + 1e-12) and np.all(batch.capacity_ah <= batch.upper_ah + 1e-12)
    assert np.all(batch.eol_lower <= batch.eol_cycle) and np.all(batch.eol_cycle <= batch.eol_upper)
    assert np.all(batch.origin_cycle == k.cycle[np.array(cut) - 1])
    # A cell with too little history gets no forecast, not an error; an empty row neither.
    few = f.forecast(
        np.array([[0.0, 1.0, np.nan], [np.nan] * 3]), np.array([[2.0, 1.99, np.nan], [np.nan] * 3]), 2.0, h, 1.4
    )
    assert np.isnan(few.capacity_ah).all() and np.isnan(few.eol_cycle).all()


def test_outlier_in_the_history_changes_nothing_and_a_crossed_threshold_is_observed(tmp_path):
    fleet = knee_fleet()
    f = _model(tmp_path, fleet[1:])
    k = fleet[0]
    n = 500
    h = np.arange(1, 101, dtype=float)
    clean = f.forecast(k.cycle[None, :n], k.capacity_ah[None, :n], 2.0, h, 1.4)
    dirty_cap = k.capacity_ah[:n].copy()
    dirty_cap[[100, 480]] = [0.2, 3.1]
    dirty = f.forecast(k.cycle[None, :n], dirty_cap[None, :], 2.0, h, 1.4)
    assert dirty.outliers[0] == 2
    np.testing.assert_allclose(dirty.capacity_ah, clean.capacity_ah, atol=2e-3)
    late = f.forecast(k.cycle[None, :], k.capacity_ah[None, :], 2.0, h, 1.4)  # the whole life: already past EOL
    first = evaluate.first_crossing(k.cycle, k.capacity_ah, 1.4)  # noisy per-cycle data: the bin means decide
    assert late.eol_cycle[0] == pytest.approx(first, abs=20)
    assert late.eol_lower[0] == late.eol_cycle[0] == late.eol_upper[0]


def test_model_file_and_metadata_must_match(tmp_path):
    fleet = knee_fleet(4)
    f = _model(tmp_path, fleet)
    assert f.version.startswith("soh-v2-") and f.rate_sigma == pytest.approx(soh.RATE_SIGMA_ONE / 2)
    coarse = _model(tmp_path, fleet, name="g", coarse=True)
    assert coarse.rate_sigma == f.rate_sigma and coarse.shifts < f.shifts and coarse.version != f.version
    refs = tmp_path / "m.refs"
    model = json.loads(refs.read_text())
    model["references"][0]["q"][5] += 0.01  # one number changed, the metadata not rebuilt
    refs.write_text(json.dumps(model))
    with pytest.raises(SohModelError, match="does not match its metadata"):
        SohForecaster(refs)
    with pytest.raises(SohModelError, match="cannot read"):
        SohForecaster(tmp_path / "missing.refs")
    (tmp_path / "x.refs").write_text("{not json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(SohModelError, match="does not match its metadata"):  # the hash is checked first
        SohForecaster(tmp_path / "x.refs")
    (tmp_path / "x.json").write_text(json.dumps({"model_sha256": hashlib.sha256(b"{not json").hexdigest()}))
    with pytest.raises(SohModelError, match="x.refs is not valid JSON"):
        SohForecaster(tmp_path / "x.refs")
    (tmp_path / "x.json").write_text("{truncated")
    with pytest.raises(SohModelError, match="metadata .*x.json is not valid JSON"):
        SohForecaster(tmp_path / "x.refs")


# ---------------------------------------------------------------------------------------------- NASA PCoE
@pytest.fixture(scope="module")
def nasa_loo(nasa):
    return evaluate.evaluate_soh(nasa, 2.0, 0.7, 0.5)


def test_nasa_baseline_reproduces_the_issue_numbers(nasa_loo):
    got = {c["cell"]: c["baseline_rmse_ah"] * 1000 for c in nasa_loo["cells"]}
    for cell, mah in PUBLISHED_BASELINE_MAH.items():
        assert got[cell] == pytest.approx(mah, abs=1.0), (cell, got[cell])


def test_nasa_leave_one_cell_out(nasa_loo):
    """B0005 and B0006 better than the previous (damped-trend) model; B0007 and B0018 worse (docs/models.md: NASA's
    cells are not sisters, B0007 fades more slowly than any of its three references). Overall 0.51 x the baseline:
    the goal (0.5) is not met; this guards against losing more."""
    assert nasa_loo["rmse_ah"] <= 0.55 * nasa_loo["baseline_rmse_ah"]
    by = {c["cell"]: c for c in nasa_loo["cells"]}
    for cell in ("B0005", "B0006"):
        assert by[cell]["rmse_ah"] * 1000 < DAMPED_TREND_MAH[cell]
    assert by["B0006"]["ratio_to_baseline"] < 0.3
    for c in nasa_loo["cells"]:
        assert 0.0 <= c["interval_coverage"] <= 1.0 and c["history_outliers_dropped"] == 0
        s = c["_series"]
        assert np.all(np.array(s["lower"]) <= np.array(s["upper"]))
    assert nasa_loo["data_cleaning"]["cells"] == {}  # built from the NASA files, not a CSV


# ---------------------------------------------------------------------------------------------- commands
def _cli(*args, timeout=600, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "model", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def test_evaluate_and_train_soh_commands(shared_data, tmp_path):
    src = read_capacity_csv(shared_data / "baumhofer2014" / "capacity_checkpoints.csv")
    pick = [c for c in src if c.cell in ("sanyo_002", "sanyo_003", "sanyo_007", "sanyo_008", "sanyo_039")]
    lines = ["cell,cycle,capacity_ah"]
    for c in pick:
        lines += [f"{c.cell},{cy},{float(q)!r}" for cy, q in zip(c.cycle, c.capacity_ah)]
        lines.append(f"{c.cell},{c.cycle[3]},{float(c.capacity_ah[3]) + 0.002!r}")  # a repeated checkpoint
    lines.append("sanyo_002,1500,")  # a row without a capacity
    csv_path = tmp_path / "five.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    common = ["--capacity-csv", str(csv_path), "--nominal-ah", "1.85", "--eol-fraction", "0.8"]
    p = _cli("evaluate", "soh", *common, "--from-fraction", "0.5", "--json", "--out-dir", str(tmp_path / "rep"))
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["mode"] == "leave-one-cell-out" and r["n_cells"] == 5
    assert r["data_cleaning"]["repeats_combined"] == 5 and r["data_cleaning"]["not_a_capacity"] == 1
    for c in r["cells"]:
        assert {
            "rmse_ah",
            "baseline_rmse_ah",
            "eol_cycle_predicted",
            "eol_cycle_actual",
            "interval_coverage",
            "eol_cycle_lower",
            "eol_cycle_upper",
        } <= set(c)
        assert c["rmse_ah"] < 0.5 * c["baseline_rmse_ah"]
    assert 0 < r["interval_coverage"] <= 1 and r["eol_abs_error_median_cycles"] < 100
    assert (tmp_path / "rep" / "soh_evaluation.png").stat().st_size > 10_000
    p = _cli("evaluate", "soh", *common, "--subsets", "4", "--repeats", "2", "--seed", "3", "--json")
    assert p.returncode == 0, p.stderr
    sub = json.loads(p.stdout)
    assert (
        sub["n_forecasts"] == 8 and sub["subset_size"] == 4 and 0 <= sub["fraction_subsets_all_cells_meet_goals"] <= 1
    )
    p = _cli("train", "soh", "--capacity-csv", str(csv_path), "--out", str(tmp_path / "m"))
    assert p.returncode == 2 and "--nominal-ah" in p.stderr
    p = _cli("train", "soh", *common, cwd=tmp_path)  # the issue's command: no --out, the model goes to ./models
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["files"] == ["models/soh.refs", "models/soh.json"]
    meta = json.loads((tmp_path / "models" / "soh.json").read_text())
    assert meta["training_data"]["cells"] == [c.cell for c in pick]
    assert set(meta["metrics"]["leave_one_cell_out"]["cells"]) == {c.cell for c in pick}
    f = SohForecaster(tmp_path / "models" / "soh.refs")
    assert f.version == meta["version"] and f.ref_cells == [c.cell for c in pick]
    p = _cli("evaluate", "soh", *common, "--model", str(tmp_path / "models" / "soh.refs"), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["mode"] == "fixed model"


def test_nasa_csv_round_trip(nasa, tmp_path):
    csv_path = tmp_path / "nasa.csv"
    write_capacity_csv(csv_path, nasa)
    back = read_capacity_csv(csv_path)
    assert [len(h) for h in back] == [168, 168, 168, 132]
    assert sum(h.meta["cleaning"]["outliers"] for h in back) == 0  # regeneration spikes are data
