"""Simulated fleets as model data: `battery-twin simulate` -> capacity CSV / Qdlin layout -> the model commands."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from agent.inference import default_soh_path
from cloud.datasets import simulated
from cloud.datasets.capacity import read_capacity_csv
from cloud.datasets.severson import load_qdlin


def cli(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_simulated_fleet_to_capacity_csv_and_soh_evaluation(tmp_path):
    sim = tmp_path / "sim"
    p = cli(
        "simulate",
        "--out",
        str(sim),
        "--cells",
        "3",
        "--cycles",
        "10",
        "--chemistry",
        "lfp",
        "--capacity-ah",
        "1.1",
        "--format",
        "csv",
        "--quiet",
        "--no-png",
        "--ageing-acceleration",
        "50",
        "--dt-s",
        "10",
        "--readings-every-s",
        "0",
    )
    assert p.returncode == 0, p.stderr
    out = tmp_path / "cap.csv"
    d = cli("model", "dataset", "simulated", "--sim-dir", str(sim), "--out", str(out))
    assert d.returncode == 0, d.stderr
    cells = read_capacity_csv(out)
    assert [c.cell for c in cells] == ["c01", "c02", "c03"] and all(len(c) == 10 for c in cells)
    assert all(np.all(np.diff(c.capacity_ah[2:]) < 0.01) for c in cells)  # ageing, no jumps
    e = cli(
        "model",
        "evaluate",
        "soh",
        "--capacity-csv",
        str(out),
        "--nominal-ah",
        "1.1",
        "--eol-fraction",
        "0.8",
        "--from-fraction",
        "0.5",
        "--model",
        str(default_soh_path()),
        "--json",
    )
    assert e.returncode == 0, e.stderr
    r = json.loads(e.stdout)
    assert r["mode"] == "fixed model" and r["n_cells"] == 3 and r["rmse_ah"] < 0.05


def test_qdlin_layout_from_simulated_curves(tmp_path):
    """write_qdlin on a hand-made simulate-style folder: only complete cells with a cycle life are written."""
    sim = tmp_path / "sim"
    sim.mkdir()
    grid = np.linspace(3.5, 2.0, 50)
    rows = ["cell,cycle," + ",".join(f"q_ah_at_{v:.4f}" for v in grid)]
    for cell, last in (("c01", 100), ("c02", 100), ("c03", 60)):
        for cyc in range(1, last + 1):
            q = np.linspace(0, 1.1 - 0.001 * cyc, grid.size)
            rows.append(f"{cell},{cyc}," + ",".join(f"{x:.6f}" for x in q))
    (sim / "qv.csv").write_text("\n".join(rows) + "\n")
    (sim / "meta.json").write_text(json.dumps({"cell_ids": ["c01", "c02", "c03"], "cycle_life": [900, -1, 700]}))
    folder, lives, ids = simulated.write_qdlin(sim, tmp_path / "qdlin")
    assert ids == ["c01"]  # c02 never reached end of life, c03 has no cycle 100
    data = load_qdlin(folder, lives)
    assert data.qdlin.shape == (1, 50, 99) and data.cycle_life.tolist() == [900.0]
    assert data.qdlin[0, -1, 0] == pytest.approx(1.1 - 0.002)  # column 0 = cycle 2
