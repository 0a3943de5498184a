"""Golden tests per file in ../shared/data/cyclers: row counts, first and last rows in the contract's units and sign,
and per-cycle discharge capacity from the twin's summaries within 0.5 % of what the file itself records.

Expected first/last rows were read off the raw lines by hand (see each comment): the wall clock converted with
the given zone, the vendor's unit and sign turned into volts, amperes with charge positive, degC.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from agent.twin.filecycles import summarise
from drivers.cycler.readers import open_source
from drivers.cycler.text import Parsed

DATA = Path("/work/shared/data/cyclers")
NAN = float("nan")

# file, zone, start (BDF), rows, first/last (ts_ms, V, A, degC, cycle, step), capacity rule
GOLDEN = [
    # 12/11/2020 12:22:12 London (GMT) ; last: TestTime 2d 02:52:51.57 later; state R, 0 A
    ("maccor_001.txt", "Europe/London", None, 6704,
     (1607689332000, 3.4625, 0.0, NAN, 0, 1), (1607872503570, 3.55131, 0.0, NAN, 0, 24), None),
    # 2022-05-18 16:27:52 Shanghai (UTC+8); last row has no newline; CC Chg +0.99171 mA
    ("neware_uio.csv", "Asia/Shanghai", None, 9065,
     (1652862472000, 2.917, 0.0, NAN, 1, 1), (1653381010000, 0.4251, 0.00099171, NAN, 4, 13), "per_step"),
    # 2026-03-06 12:37:25 Oslo (UTC+1); T1 26.61; cycle/step from the cycle and step rows above the records
    ("nw_regular_export_ife_example.csv", "Europe/Oslo", None, 9295,
     (1772797045000, 4.3185, 0.0, 26.61, 1, 1), (1772897588000, 4.1544, 0.0, 26.78, 20, 81), "cycle_rows"),
    # 02/22/2019 16:23:27 Denver (UTC-7); 3272.632 mV; last: 3787.5572 mV, +1640.1 mA, surface 25.6 degC
    ("pec.csv", "America/Denver", None, 16255,
     (1550877807000, 3.272632, 0.0, 24.9, 0, 0), (1551200816183, 3.7875572, 1.6401, 25.6, 2, 8), "per_cycle"),
    # no wall clock: start given; first row is a discharge written with +0.006055 A (discharge positive)
    ("batmo_bdf.csv", "UTC", 1_600_000_000_000, 21206,
     (1600000000000, 3.31121478737747, -0.00605515800906498, NAN, 1, 1),
     (1601410980000, 3.00654798557344, 0.0, NAN, 109, 5), "per_step"),
]  # fmt: skip


def read_all(name: str, tz: str, start_ms: int | None) -> Parsed:
    src = open_source(DATA / name, "cell-1", "auto", tz, start_ms)
    parsed, progress = src.poll(final=True)
    assert parsed is not None and not progress.bad_rows
    more, _ = src.poll(final=True)
    assert more is None, "the whole file in one poll (it is smaller than a chunk)"
    return parsed


def recorded_capacity(p: Parsed, rule: str, name: str) -> dict[int, float]:
    """The discharge capacity the file records per cycle (vendors reset it per step or per cycle)."""
    if rule == "cycle_rows":  # Neware's regular export writes one summary row per cycle: DChg. Cap.(Ah) is field 2
        with (DATA / name).open(newline="") as f:
            return {int(r[0]): float(r[2]) for r in csv.reader(f) if r and r[0].isdigit()}
    out = {}
    for c in np.unique(p.cycle_no):
        m = p.cycle_no == c
        if rule == "per_step":
            out[int(c)] = float(sum(np.nanmax(p.discharge_ah[m & (p.step_no == s)]) for s in np.unique(p.step_no[m])))
        else:
            out[int(c)] = float(np.nanmax(p.discharge_ah[m]))
    return out


def check_row(p: Parsed, k: int, want: tuple[float, ...]) -> None:
    got = (p.ts_ms[k], p.voltage_v[k], p.current_a[k], p.temperature_c[k], p.cycle_no[k], p.step_no[k])
    assert got[0] == want[0]
    np.testing.assert_allclose(got[1:4], want[1:4], rtol=1e-6, atol=1e-9)
    assert (got[4], got[5]) == want[4:]


@pytest.mark.parametrize(("name", "tz", "start", "rows", "first", "last", "rule"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_text_file_golden(name, tz, start, rows, first, last, rule):
    p = read_all(name, tz, start)
    assert len(p) == rows
    check_row(p, 0, first)
    check_row(p, -1, last)
    assert (np.diff(p.ts_ms) >= 0).all(), "time runs forward"
    assert np.array_equal(p.row, np.sort(p.row)) and len(np.unique(p.row)) == rows
    if rule is None:
        return
    recorded = recorded_capacity(p, rule, name)
    cycles = summarise("cell-1", p.cycle_no, p.ts_ms, p.current_a, p.voltage_v, p.temperature_c, p.step_no, True)
    checked = 0
    for cy in cycles:
        want = recorded.get(cy["cycle"], 0.0)
        if want > 0:
            assert cy["discharge_ah"] == pytest.approx(want, rel=0.005), f"cycle {cy['cycle']}"
            checked += 1
    assert checked >= 2


def test_maccor_current_sign_follows_the_state_column():
    """Maccor writes unsigned amps; state D is a discharge (negative), C a charge (positive)."""
    p = read_all("maccor_001.txt", "Europe/London", None)
    with (DATA / "maccor_001.txt").open() as f:
        state = np.array([line.split("\t")[9] for line in f.read().splitlines()[4:]])
    assert (p.current_a[state == "D"] < 0).all() and (p.current_a[state == "C"] > 0).all()
    assert (state == "D").sum() == 2082 and (state == "C").sum() == 2450


def test_bdf_charge_steps_are_positive_after_mapping():
    p = read_all("batmo_bdf.csv", "UTC", 0)
    with (DATA / "batmo_bdf.csv").open() as f:
        kind = np.array([r[4] for r in list(csv.reader(f))[1:]])
    assert (p.current_a[kind == "charge"] > 0).all() and (p.current_a[kind == "discharge"] < 0).all()
