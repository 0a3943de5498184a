"""Ageing as degradation modes: capacity fade, resistance growth and the *shape* of Q(V) / dQ/dV change; calendar
ageing follows temperature; cell-to-cell variability is seeded."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.ageing import Ageing, Stress
from simulator.cell import CellArray
from simulator.chemistry import get_chemistry
from simulator.rig import Rig, RigSpec


def _ocv_curve(cells: CellArray, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Open-circuit Q(V) of cell 0 between its limits: (discharged Ah, V)."""
    q = np.linspace(cells.q_hi[0], cells.q_lo[0], n)
    v = np.array([cells.ocv_at(np.full(cells.n, qq))[0] for qq in q])
    return cells.q_hi[0] - q, v


@pytest.mark.parametrize("mode", ["lli", "lam_ne", "lam_pe"])
def test_each_mode_changes_capacity_and_shape_differently(mode):
    chem = get_chemistry("nmc811")
    cells = CellArray(chem, 1, np.random.default_rng(0), capacity_cv=0, resistance_cv=0, initial_soc=0.5)
    q0, v0 = _ocv_curve(cells)
    inc = {"lli": np.zeros(1), "lam_ne": np.zeros(1), "lam_pe": np.zeros(1)}
    inc[mode] = np.array([0.15])
    cells.apply_modes(inc, np.ones(1), {"lam_ne": 0.0, "lam_pe": 1.0})
    q1, v1 = _ocv_curve(cells)
    grid = np.linspace(3.5, 4.1, 300)
    dqdv0 = -np.gradient(np.interp(grid, v0[::-1], q0[::-1]), grid)
    dqdv1 = -np.gradient(np.interp(grid, v1[::-1], q1[::-1]), grid)
    loss = q0[-1] - q1[-1]
    if mode == "lli":
        assert loss == pytest.approx(0.15 * 5.0, rel=0.25)  # LLI costs capacity about one for one
    elif mode == "lam_pe":
        assert loss > 0.2
    else:
        # the negative electrode has spare capacity (x100 = 0.91): a little LAM_NE costs little capacity...
        assert 0.0 < loss < 0.6
    # ... but every mode reshapes dQ/dV, not just scales it
    shape0 = dqdv0 / dqdv0.sum()
    shape1 = dqdv1 / dqdv1.sum()
    assert np.abs(shape1 - shape0).sum() > 0.05


def test_lam_ne_past_the_negative_excess_makes_a_knee():
    chem = get_chemistry("lfp")
    cells = CellArray(chem, 1, np.random.default_rng(0), capacity_cv=0, resistance_cv=0, initial_soc=0.5)
    caps = [cells.capacity_ah[0]]
    z = np.zeros(1)
    for _ in range(12):
        cells.apply_modes({"lli": z, "lam_ne": np.array([0.03]), "lam_pe": z}, np.ones(1))
        caps.append(cells.capacity_ah[0])
    drops = -np.diff(caps)
    assert drops[:3].mean() < 0.25 * drops[-3:].mean()  # slow first, then fast: a knee


def test_cycling_fades_capacity_grows_resistance_and_reshapes_q_v():
    r = Rig(
        RigSpec(
            cells=2,
            chemistry="nmc811",
            initial_soc=0.0,
            cycles=30,
            ageing_acceleration=30.0,
            variability={"capacity_cv": 0.0, "resistance_cv": 0.0, "ageing_cv": 0.0},
            qv_cycles={1, 30},
            sensor_noise={},
        )
    )
    r.run(30 * 20_000, 20.0, until_cycles=30)
    c = r.log.columns()
    first, last = c["cycle"] == 1, c["cycle"] == 30
    assert np.all(c["discharge_ah"][last] < c["discharge_ah"][first] - 0.2)
    assert np.all(c["r0_ohm"][last] > 1.05 * c["r0_ohm"][first])
    assert np.all(c["lli"][last] > 0.05) and np.all(c["lam_ne"][last] > 0) and np.all(c["lam_pe"][last] > 0)
    qv = r.log.qv_matrix(2, 500)
    q1 = qv["q_ah"][(qv["cell"] == 0) & (qv["cycle"] == 1)][0]
    q30 = qv["q_ah"][(qv["cell"] == 0) & (qv["cycle"] == 30)][0]
    dq = q30 - q1
    assert np.nanmin(dq) < -0.1 and np.nanvar(dq) > 1e-4  # not a uniform shift: the curve changed shape


def test_calendar_ageing_is_faster_hot():
    chem = get_chemistry("nmc811")
    n = 3
    a = Ageing(chem, n, np.random.default_rng(0), ageing_cv=0.0)
    z = np.zeros(n)
    for _ in range(365):
        a.update(
            Stress(
                days=1.0,
                efc=z,
                ah_dis=z,
                t_k=np.array([298.15, 318.15, 298.15]),
                soc=np.array([0.5, 0.5, 1.0]),
                c_dis=z,
                c_chg=z,
            ),
            5.0,
        )
    lli = a.modes["lli"]
    assert 0.005 < lli[0] < 0.08  # BLAST-Lite LG M50: a few % per year at 25 degC, 50 % SOC
    assert lli[1] > 1.5 * lli[0]
    assert 0.5 * lli[0] < lli[2] < 2.0 * lli[0]  # the LG M50 fit has little SOC dependence above 50 %


def test_variability_is_seeded():
    def caps(seed: int) -> np.ndarray:
        return Rig(RigSpec(cells=6, chemistry="lfp", seed=seed)).capacity_ah

    assert np.array_equal(caps(4), caps(4))
    assert not np.allclose(caps(4), caps(5))
    assert np.std(caps(4)) > 0


def test_acceleration_scales_ageing():
    def lli(acc: float) -> float:
        r = Rig(
            RigSpec(
                cells=1,
                chemistry="nmc811",
                initial_soc=0.5,
                protocol=[{"step": "rest"}],
                ageing_acceleration=acc,
                variability={"ageing_cv": 0.0},
            )
        )
        r.run(30 * 86400, 3600.0)
        return float(r.ageing.modes["lli"][0])

    assert lli(10.0) == pytest.approx(lli(1.0) * 10**0.6517, rel=0.05)  # t**p_cal with t ten times longer


def test_resistance_growth_exponent_bends_the_growth():
    """``resistance.exponent``: linear by default; above 1 the growth is slow while the loss is small and
    accelerates later (the resistance elbow), with the same coefficient."""
    import dataclasses

    chem = get_chemistry("lco")

    def factors(exponent: float | None) -> np.ndarray:
        res = {"per_lli": 2.0, "per_lam_ne": 0.0, "per_lam_pe": 0.0}
        if exponent is not None:
            res["exponent"] = exponent
        a = Ageing(dataclasses.replace(chem, ageing={**chem.ageing, "resistance": res}), 3, np.random.default_rng(0))
        a.modes["lli"] = np.array([0.0, 0.1, 0.5])
        return a.resistance_factor()

    assert factors(None) == pytest.approx([1.0, 1.2, 2.0])
    assert factors(1.0) == pytest.approx(factors(None))
    assert factors(2.0) == pytest.approx([1.0, 1.02, 1.5])


def test_bad_ageing_settings_are_refused():
    with pytest.raises(ValueError, match="ageing override 'nope'"):
        Rig(RigSpec(cells=1, ageing_overrides={"nope": {"k": 1}}))
    with pytest.raises(ValueError, match="acceleration"):
        Rig(RigSpec(cells=1, ageing_acceleration=-1))
