"""``battery-twin simulate`` as a user runs it: a subprocess writing Parquet or CSV, a PNG, and refusing bad input
with a message that names it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest


def run(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", "simulate", *args], capture_output=True, text=True, timeout=timeout
    )


def test_simulate_parquet_dataset_with_png(tmp_path):
    out = tmp_path / "ds"
    p = run(
        "--out",
        str(out),
        "--cells",
        "4",
        "--cycles",
        "6",
        "--chemistry",
        "lfp",
        "--capacity-ah",
        "1.1",
        "--policies",
        "3.6C(80%)-3.6C,8C(15%)-3.6C",
        "--ambient-c",
        "30",
        "--ageing-acceleration",
        "20",
        "--qv-cycles",
        "1,6",
        "--dt-s",
        "10",
        "--readings-every-s",
        "30",
    )
    assert p.returncode == 0, p.stderr
    assert "simulating 4 cells x 6 cycles" in p.stderr and "100%" in p.stderr  # the progress bar
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert set(summary["files"]) == {"cycles.parquet", "readings.parquet", "qv.parquet", "summary.png"}
    cycles = pq.read_table(out / "cycles.parquet").to_pydict()
    assert sorted(set(cycles["cell"])) == ["c01", "c02", "c03", "c04"]
    assert len(cycles["cycle"]) == 24 and max(cycles["cycle"]) == 6
    cap = np.array(cycles["discharge_ah"])
    assert np.all((cap > 0.9) & (cap < 1.15))
    readings = pq.read_table(out / "readings.parquet")
    assert readings.num_rows == summary["readings"] > 1000
    assert set(readings.column_names) == {"time_s", "cell", "voltage_v", "current_a", "temperature_c", "soc_true"}
    qv = pq.read_table(out / "qv.parquet")
    assert qv.num_rows == 8 and qv.num_columns == 2 + 1000  # cycles 1 and 6 of 4 cells
    png = (out / "summary.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    meta = json.loads((out / "meta.json").read_text())
    assert meta["chemistry"] == "lfp" and len(meta["cycle_life"]) == 4


def test_simulate_csv_with_faults(tmp_path):
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps([{"kind": "capacity_outlier", "cell": "c02", "factor": 0.8}]))
    out = tmp_path / "csv"
    p = run(
        "--out",
        str(out),
        "--cells",
        "3",
        "--cycles",
        "2",
        "--format",
        "csv",
        "--no-png",
        "--quiet",
        "--faults",
        f"@{faults}",
        "--readings-every-s",
        "0",
    )
    assert p.returncode == 0, p.stderr
    lines = (out / "cycles.csv").read_text().splitlines()
    head = lines[0].split(",")
    rows = [dict(zip(head, line.split(","))) for line in lines[1:]]
    assert len(rows) == 6 and not (out / "readings.csv").exists() and not (out / "summary.png").exists()
    assert (out / "qv.csv").read_text().count("\n") == 1 + 3  # cycle 1 of each cell, always kept
    c1 = [float(r["discharge_ah"]) for r in rows if r["cell"] == "c01"]
    c2 = [float(r["discharge_ah"]) for r in rows if r["cell"] == "c02"]
    assert c2[-1] == pytest.approx(0.8 * c1[-1], rel=0.05)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--protocol", "severson:4C(40%)-zz"], "cannot parse 'zz'"),
        (["--chemistry", "unobtainium"], "unknown chemistry 'unobtainium'"),
        (["--protocol", "@/nonexistent/steps.json"], "steps.json"),
        (["--cells", "0"], "--cells"),
        (["--qv-cycles", "ten"], "--qv-cycles 'ten'"),
    ],
)
def test_simulate_bad_input_exits_2_naming_it(tmp_path, args, words):
    p = run("--out", str(tmp_path / "x"), "--quiet", *args)
    assert p.returncode == 2
    assert words in p.stderr, p.stderr
    assert not (tmp_path / "x").exists()
