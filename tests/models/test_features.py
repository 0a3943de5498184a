"""The feature home (agent/features): numpy-only code checked against scipy and exact synthetic cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from agent.features import cyclelife as cl
from agent.features import soh
from agent.features.qdv import SEVERSON_GRID, VoltageGrid, qd_on_grid


def test_qd_on_grid_recovers_a_known_curve():
    # A discharge whose voltage falls linearly with charge: V = 3.5 - 1.5 * Q / 1.0 Ah, sampled with noise wiggles.
    q = np.linspace(0, 1.0, 4000)
    v = 3.5 - 1.5 * q
    v_noisy = v + 0.0005 * np.sin(np.arange(q.size))  # non-monotone wiggles the running minimum must absorb
    grid = SEVERSON_GRID
    out = qd_on_grid(v_noisy, q, grid)
    expected = (3.5 - grid.volts) / 1.5
    assert out.shape == (1000,)
    assert np.all(np.diff(out) >= 0)  # capacity grows as voltage falls
    assert np.max(np.abs(out - expected)) < 1.5e-3


def test_qd_on_grid_holds_the_end_when_discharge_stops_above_v_low():
    q = np.linspace(0, 0.8, 500)
    v = 3.4 - 0.5 * q  # stops at 3.0 V, above the grid's 2.0 V
    out = qd_on_grid(v, q, VoltageGrid(3.5, 2.0, 100))
    assert out[0] == pytest.approx(0.0)  # above the first sample: the first capacity
    assert out[-1] == pytest.approx(0.8)  # below the last sample: the last capacity held
    assert np.isnan(qd_on_grid([np.nan], [np.nan], VoltageGrid())).all()


def test_cycle_life_moments_match_scipy():
    rng = np.random.default_rng(1)
    early = rng.normal(1.0, 0.01, (5, 1000)).cumsum(axis=1) / 1000
    late = early - rng.gamma(2.0, 0.002, (5, 1000))
    cap = np.full((5, 99), 1.05) - np.linspace(0, 0.01, 99)
    x = cl.compute(early, late, cap, ("log10_var_dq_ah2", "skew_dq", "kurtosis_dq", "log10_abs_min_dq_ah"))
    dq = late - early
    np.testing.assert_allclose(x[:, 0], np.log10(np.var(dq, axis=1, ddof=1)), rtol=1e-12)
    np.testing.assert_allclose(x[:, 1], stats.skew(dq, axis=1), rtol=1e-9)
    np.testing.assert_allclose(x[:, 2], stats.kurtosis(dq, axis=1), rtol=1e-9)
    np.testing.assert_allclose(x[:, 3], np.log10(np.abs(dq.min(axis=1))), rtol=1e-12)


def test_capacity_glitch_is_repaired_and_does_not_own_the_max_feature():
    cap = np.linspace(1.06, 1.05, 99)[None, :].copy()
    cap[0, 40] = 31.0  # a logged glitch, as in the Severson data
    fixed = cl.repair_capacity(cap)
    assert fixed[0, 40] == pytest.approx(np.median(cap[0, 38:43]))
    x = cl.compute(np.zeros((1, 10)), -np.linspace(0, 0.01, 10)[None, :], cap, ("qd_max_minus_cycle2_ah",))
    assert x[0, 0] < 0.01


def test_spec_windows():
    spec = cl.CycleLifeSpec(20, 2)
    assert spec.early_cycles() == [18, 19, 20, 21, 22]
    assert spec.late_cycles() == [96, 97, 98, 99, 100]
    with pytest.raises(ValueError):
        cl.CycleLifeSpec(1, 2)
    with pytest.raises(KeyError):
        cl.compute(np.zeros((1, 5)), np.ones((1, 5)), np.ones((1, 99)), ("no_such_feature",))


def test_iqr_and_fade_features():
    rng = np.random.default_rng(2)
    early = rng.normal(0, 0.01, (4, 500)).cumsum(axis=1)
    late = early - rng.gamma(2.0, 0.002, (4, 500))
    cap = np.linspace(1.06, 1.04, 99)[None, :].repeat(4, axis=0)
    x = cl.compute(early, late, cap, ("log10_iqr_dq_ah", "qd_fade_10_100_ah"))
    np.testing.assert_allclose(x[:, 0], np.log10(stats.iqr(late - early, axis=1)), rtol=1e-12)
    np.testing.assert_allclose(x[:, 1], cap[:, -1] - cap[:, 8], rtol=1e-12)  # column 8 = cycle 10


def test_feature_refs_keys_windows_and_bad_keys():
    ref = cl.FeatureRef.parse("log10_var_dq_ah2@20/2")
    assert ref == cl.FeatureRef("log10_var_dq_ah2", cl.CycleLifeSpec(20, 2)) and ref.key == "log10_var_dq_ah2@20/2"
    assert cl.FeatureRef.parse("qd_cycle2_ah") == cl.FeatureRef("qd_cycle2_ah")
    refs = cl.refs_for(cl.FEATURE_SETS["discharge"], cl.CycleLifeSpec(10, 0)) + (ref,)
    assert cl.windows(refs) == [cl.CycleLifeSpec(10, 0), cl.CycleLifeSpec(20, 2)]
    assert cl.curve_cycles(refs) == {10, 100, 18, 19, 20, 21, 22, 96, 97, 98, 99}
    for bad in ("log10_var_dq_ah2", "qd_cycle2_ah@10/0", "log10_var_dq_ah2@1/2", "log10_var_dq_ah2@x/y", "nope@10/0"):
        with pytest.raises((ValueError, KeyError)):
            cl.FeatureRef.parse(bad)


def test_windowed_features_match_the_single_window_path_and_the_twins_curves():
    rng = np.random.default_rng(3)
    q = np.cumsum(rng.uniform(0, 2e-3, (3, 200, 99)), axis=1) - np.linspace(0, 5e-3, 99)
    a, b = cl.CycleLifeSpec(10, 0), cl.CycleLifeSpec(20, 2)
    refs = cl.refs_for(("log10_var_dq_ah2", "skew_dq", "qd_cycle2_ah"), a) + cl.refs_for(("log10_var_dq_ah2",), b)
    x = cl.qdlin_features(q, refs)
    ea, la, cap = cl.window_curves(q, a)
    eb, lb, _ = cl.window_curves(q, b)
    np.testing.assert_allclose(x[:, :3], cl.compute(ea, la, cap, ("log10_var_dq_ah2", "skew_dq", "qd_cycle2_ah")))
    np.testing.assert_allclose(x[:, 3], cl.compute(eb, lb, cap, ("log10_var_dq_ah2",))[:, 0])
    # The twin's path: a dict of the curves it kept, one cell at a time; a cycle missing from a window is skipped.
    curves = {c: q[1, :, c - 2] for c in cl.curve_cycles(refs)}
    np.testing.assert_allclose(cl.curves_features(curves, q[1, -1, :], refs)[0], x[1], rtol=1e-12)
    del curves[10]  # window 10/0 has a single cycle: no prediction possible
    assert cl.curves_features(curves, q[1, -1, :], refs) is None


def test_soh_history_prepared_the_same_whatever_the_layout():
    """Column order, NaN gaps and repeated checkpoints do not change what the forecaster sees."""
    cycles = np.arange(0, 400, 20, dtype=float)
    cap = 2.0 - 0.001 * cycles
    base = soh.prepare(cycles[None, :], cap[None, :], 32)
    assert base.n_points[0] == cycles.size and base.outliers[0] == 0
    rng = np.random.default_rng(0)
    order = rng.permutation(cycles.size)
    gaps = np.full((1, 30), np.nan), np.full((1, 30), np.nan)
    gaps[0][0, order + 5] = cycles[order]
    gaps[1][0, order + 5] = cap[order]
    shuffled = soh.prepare(*gaps, 32)
    np.testing.assert_array_equal(shuffled.cycle[shuffled.valid], base.cycle[base.valid])
    np.testing.assert_allclose(shuffled.capacity_ah[shuffled.valid], base.capacity_ah[base.valid])
    # A checkpoint measured twice is one point, the mean; a zero or negative capacity is no measurement.
    twice = soh.prepare(np.r_[cycles, 100.0, 60.0][None, :], np.r_[cap, 1.92, -1.0][None, :], 32)
    assert twice.n_points[0] == cycles.size
    k = int(np.nonzero(twice.cycle[twice.valid] == 100.0)[0][0])
    assert twice.capacity_ah[twice.valid][k] == pytest.approx((1.9 + 1.92) / 2)


def test_soh_outliers_are_dropped_and_counted_but_real_fade_is_not():
    cycles = np.arange(0, 300, dtype=float)
    cap = 2.0 - 0.0005 * cycles - 0.5 * np.clip((cycles - 200) / 100, 0, None) ** 2  # a knee: real, kept
    bad = cap.copy()
    bad[[50, 120]] = [0.9, 2.6]  # a partial discharge and a unit slip
    out = soh.prepare(cycles[None, :], bad[None, :], 1000)
    assert out.outliers[0] == 2 and out.n_points[0] == cycles.size - 2
    assert not np.isin([50.0, 120.0], out.cycle[out.valid]).any()
    clean = soh.prepare(cycles[None, :], cap[None, :], 1000)
    assert clean.outliers[0] == 0  # the knee's curvature is not an outlier
    sparse = soh.prepare(cycles[None, ::40], cap[None, ::40], 1000)
    assert sparse.outliers[0] == 0


def test_soh_long_histories_are_condensed_to_bin_means():
    cycles = np.arange(1000, dtype=float)
    cap = 2.0 - 0.0004 * cycles + np.where(cycles % 2 == 0, 0.01, -0.01)  # alternating noise averages out
    out = soh.prepare(cycles[None, :], cap[None, :], 20)
    assert out.n_points[0] == 20
    np.testing.assert_allclose(out.capacity_ah[0], 2.0 - 0.0004 * out.cycle[0], atol=1e-3)
    assert np.all(np.diff(out.cycle[0]) > 0)
