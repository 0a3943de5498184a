"""Severson-style LFP cells (A123 APR18650M1A class, 1.1 Ah, 30 degC) under fast-charge policies: the variance of
ΔQ(V) between two early cycles correlates negatively with the simulated cycle life, as in Severson et al. 2019
(r = -0.93 on the real cells).

Ageing runs 8x accelerated to keep the test fast, so the paper's cycles 10 and 100 become cycles 2 and 13 (cycle 1
starts from an empty cell); cycle life is cycles to 80 % of nominal (0.88 Ah), as in the paper."""

from __future__ import annotations

import numpy as np

from simulator.fleet import simulate
from simulator.rig import RigSpec

POLICIES = ["3.6C(80%)-3.6C", "4.8C(80%)-4.8C", "5.4C(40%)-3.6C", "6C(40%)-3C", "8C(15%)-3.6C", "2C(10%)-6C"]
ACCEL, EARLY, LATE = 8.0, 2, 13


def test_dq_variance_correlates_negatively_with_cycle_life():
    cells = len(POLICIES) * 2
    spec = RigSpec(
        cells=cells,
        chemistry="lfp",
        capacity_ah=1.1,
        ambient_c=30.0,
        seed=3,
        initial_soc=0.0,
        cell_protocols=[f"severson:{POLICIES[j % len(POLICIES)]}" for j in range(cells)],
        cycles=1000,
        eol_capacity_ah=0.88,
        ageing_acceleration=ACCEL,
        qv_cycles={EARLY, LATE},
    )
    res = simulate(spec, dt_s=20.0)
    life = res.cycle_life
    assert np.all(life > LATE), life  # every cell lived past the late cycle, and reached end of life
    qv = res.qv
    assert qv["grid_v"][0] == 3.5 and qv["grid_v"][-1] == 2.0 and qv["grid_v"].size == 1000
    log_var = np.empty(cells)
    for j in range(cells):
        early = qv["q_ah"][(qv["cell"] == j) & (qv["cycle"] == EARLY)][0]
        late = qv["q_ah"][(qv["cell"] == j) & (qv["cycle"] == LATE)][0]
        log_var[j] = np.log10(np.var(late - early))
    r = np.corrcoef(log_var, np.log10(life))[0, 1]
    print(
        f"\nSeverson-style fleet ({cells} LFP cells, {ACCEL:g}x ageing): cycle life {life.min()}..{life.max()} "
        f"(x{ACCEL:g} = {life.min() * ACCEL:.0f}..{life.max() * ACCEL:.0f} real), "
        f"log10 var ΔQ(V) {log_var.min():.2f}..{log_var.max():.2f}, r = {r:.2f}"
    )
    assert r < -0.5
    # faster charging, shorter life (the policy effect the models must learn)
    by_policy = {p: life[[j for j in range(cells) if j % len(POLICIES) == i]].mean() for i, p in enumerate(POLICIES)}
    assert by_policy["3.6C(80%)-3.6C"] > 1.5 * by_policy["2C(10%)-6C"]
    # capacity per cycle goes down overall and the per-cycle summaries are complete
    s = res.summaries
    first = s["discharge_ah"][s["cycle"] == 1]
    assert np.all((first > 1.0) & (first < 1.15))
    assert set(np.unique(s["cell"])) == set(range(cells))
