"""The knee: lithium plating once the negative electrode's margin is gone (simulator/plating.py), calibrated against
PyBaMM's OKane2022 DFN (stored reference: cloud/reports/knee_reference_c*.csv, made by ``python -m
cloud.knee_reference``), spread over a fleet like Baumhoefer's cells."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from simulator.ageing import Stress
from simulator.chemistry import get_chemistry
from simulator.fleet import simulate
from simulator.output import strongest_knee
from simulator.plating import Plating, knee_onset
from simulator.rig import Rig, RigSpec

KNEE_PROTOCOL = [
    {"step": "cc", "c_rate": 1.0, "until_v": 4.2},
    {"step": "cv", "v": 4.2, "until_c": 0.05},
    {"step": "cc", "c_rate": -1.0, "until_v": 2.5},
]


def _stress(n: int, c_chg: float = 0.5, t_c: float = 25.0) -> Stress:
    z = np.zeros(n)
    return Stress(1.0, z + 1.0, z + 5.0, z + 273.15 + t_c, z + 0.5, z + 1.0, z + c_chg, efc_chg=z + 1.0)


def _cells(margin: np.ndarray) -> SimpleNamespace:
    """What the plating law reads of the cells: the negative electrode's capacity now and fresh, its lithium at v_max."""
    qn0 = np.full(margin.size, 5.6)
    return SimpleNamespace(qn=qn0.copy(), qn0=qn0, q_hi=qn0 * (1.0 - margin))


def test_plating_waits_for_the_margin_then_grows():
    params = dict(get_chemistry("nmc811").ageing["plating"], margin_sd=0.0)
    onset = params["margin_onset"] + params["margin_per_c"] * 0.5  # at the 0.5C charge of _stress
    margin = onset + params["width"] * np.linspace(4.0, -4.0, 17)  # from plenty of room to none
    pl = Plating(params, margin.size, np.random.default_rng(0))
    inc = pl.update(_stress(margin.size), _cells(margin), 1.0)
    d = inc["lli"]
    assert np.all(np.diff(d) > 0) and d[-1] > 50 * d[0]  # grows as the room at the end of charge runs out
    assert d[0] < 0.05 * params["k"]  # plenty of room: practically none
    assert d[8] == pytest.approx(params["k"], rel=1e-6)  # at the onset: k per charged EFC
    assert np.allclose(inc["lam_ne"], params["lam_ne_per_loss"] * d)
    fast = Plating(params, margin.size, np.random.default_rng(0)).update(_stress(margin.size, 2.0), _cells(margin), 1.0)
    assert np.all(fast["lli"] >= d)  # fast charging plates sooner (or as soon, where the step bound holds it)
    assert params["margin_per_c"] == 0 or np.any(fast["lli"] > d)
    # the pore-clogging feedback: a cell that already plated plates more at the same margin
    pl.loss[:] = 0.05
    again = pl.update(_stress(margin.size), _cells(margin), 1.0)["lli"]
    free = d < 0.4 * params["width"]
    assert params["clog_per_loss"] == 0 or np.all(again[free] > d[free])
    # ... up to clog_max_loss: past it the feedback stops (it ran away beyond the calibrated range)
    rates = []
    for plated in (params["clog_max_loss"], 2.0 * params["clog_max_loss"]):
        capped = Plating(params, margin.size, np.random.default_rng(0))
        capped.loss[:] = plated
        rates.append(capped.update(_stress(margin.size), _cells(margin), 1.0)["lli"])
    assert params["clog_max_loss"] < 0.1 and np.array_equal(rates[0], rates[1])


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"k": -1.0}, "must not be negative"),
        ({"width": 0.0}, "width"),
        ({"speed": 1.0}, "unknown key"),
        ({"k": np.nan}, "finite"),
        ({"width": "wide"}, "finite number"),
    ],
)
def test_bad_plating_settings_are_refused(bad, match):
    params = dict(get_chemistry("nmc811").ageing["plating"], **bad)
    with pytest.raises(ValueError, match=match):
        Plating(params, 2, np.random.default_rng(0))


def _fleet(cells: int, cycles: int, accel: float, **spec) -> tuple:
    res = simulate(
        RigSpec(
            cells=cells,
            chemistry="nmc811",
            protocol=KNEE_PROTOCOL,
            cycles=cycles,
            initial_soc=0.0,
            ageing_acceleration=accel,
            sensor_noise={},
            **spec,
        ),
        dt_s=30.0,
    )
    s = res.summaries
    return s, [(s["cycle"][s["cell"] == j], s["discharge_ah"][s["cell"] == j]) for j in range(cells)]


def test_a_cell_ages_into_a_knee_once_its_margin_is_gone():
    """Three identical cells on one rig: the shipped mechanism; graphite cracking off (LAM_NE never uses up the
    negative electrode's margin); plating off. The knee needs the margin to run out; plating deepens it."""
    rig = Rig(
        RigSpec(
            cells=3,
            chemistry="nmc811",
            protocol=KNEE_PROTOCOL,
            cycles=200,
            initial_soc=0.0,
            ageing_acceleration=10.0,
            sensor_noise={},
            variability={"ageing_cv": 0.0, "capacity_cv": 0.0},
            ageing_overrides={"plating": {"margin_sd": 0.0}},
        )
    )
    names = [m["name"] for m in rig.chem.ageing["mechanisms"]]
    rig.ageing.mult[names.index("cracking")] = [1.0, 0.0, 1.0]
    rig.ageing.plating.p["k"] = rig.ageing.plating.p["k"] * np.array([1.0, 1.0, 0.0])
    rig.run(200 * 20_000.0, 30.0, until_cycles=200)
    s = rig.log.columns()
    traj = [(s["cycle"][s["cell"] == j], s["discharge_ah"][s["cell"] == j]) for j in range(3)]
    onset, before, after = knee_onset(*traj[0])
    print(f"\nknee at cycle {onset:.0f} (x10 acceleration), fade {before * 1000:.2f} -> {after * 1000:.2f} mAh/cycle")
    assert after < 1.3 * before < 0  # the fade accelerates: a knee, not BLAST-Lite's slowing power law
    assert 20 < onset < 190
    m = s["cell"] == 0
    k = int(np.searchsorted(s["cycle"][m], onset))
    assert s["lam_ne"][m][-1] > s["lam_ne"][m][k] > 0  # LAM_NE kept growing: the graphite left now limits
    assert np.isnan(knee_onset(*traj[1])[0])  # no cracking: the margin never runs out, no knee
    assert traj[2][1][-1] > traj[0][1][-1] + 0.1  # no plating: a shallower knee, more capacity left
    assert rig.ageing.plating.loss[0] > 0.01 and rig.ageing.plating.loss[2] == 0


def test_knees_begin_at_different_times_in_a_fleet():
    s, traj = _fleet(8, 200, 10.0)
    onsets = np.array([knee_onset(c, q)[0] for c, q in traj])
    print(f"\nknee onsets (cycles at x10): {np.round(onsets).tolist()}")
    assert np.all(np.isfinite(onsets))
    assert np.std(onsets) / np.mean(onsets) > 0.04  # production spread (Baumhoefer: ~12 %)
    assert strongest_knee(s, 8) is not None  # what the simulate PNG highlights


def test_fast_mechanism_follows_the_pybamm_reference():
    """The matched fast model (SEI/LAM laws from the reference, nmc811's calibrated plating law) against the stored
    PyBaMM DFN trajectory at 0.3C charge: capacity within 1.5 % throughout, knee onset within 15 % of PyBaMM's."""
    from cloud.knee_calibration import REFERENCES, versus_pybamm
    from cloud.knee_reference import read_csv

    r = versus_pybamm({0.3: read_csv(REFERENCES[0.3])})[0.3]
    print(
        f"\nvs PyBaMM: capacity error max {r['capacity_error_max'] * 100:.2f} %, knee {r['knee_onset_fast']:.0f} "
        f"vs {r['knee_onset_pybamm']:.0f} cycles"
    )
    assert r["capacity_error_max"] < 0.015
    assert abs(r["knee_onset_fast"] - r["knee_onset_pybamm"]) < 0.15 * r["knee_onset_pybamm"]
