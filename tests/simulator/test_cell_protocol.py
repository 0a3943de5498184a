"""The electrical and thermal model under protocols: CC, CV, CC-CV, rest, pulses/HPPC, Severson policies, CSV
profiles, repeats - and protocol errors that name the bad item."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.protocol import ProtocolError, compile_protocol, severson_policy
from simulator.rig import Rig, RigSpec

QUIET = {
    "sensor_noise": {},
    "variability": {"capacity_cv": 0.0, "resistance_cv": 0.0, "ageing_cv": 0.0},
    "ageing": False,
}


def rig(**kw) -> Rig:
    return Rig(RigSpec(**{**QUIET, **kw}))


def test_cccv_cycle_charge_balance_and_cv_taper():
    r = rig(cells=3, chemistry="nmc811", cycles=2, initial_soc=0.0)
    i_seen, v_seen = [], []
    r.run(60_000, 2.0, every=lambda x: (i_seen.append(x.current_a[0]), v_seen.append(x.voltage_v[0])), until_cycles=2)
    c = r.log.columns()
    assert list(c["cycle"][c["cell"] == 0]) == [1, 2]
    # at 1C to 2.5 V a 5 Ah LG M50 delivers most of its capacity; coulombic balance closes over a cycle
    assert np.all((c["discharge_ah"] > 4.4) & (c["discharge_ah"] < 5.05))
    assert np.allclose(c["charge_ah"][1::2], c["discharge_ah"][1::2], rtol=0.02)
    i = np.array(i_seen)
    v = np.array(v_seen)
    cv = (np.abs(v - 4.2) < 2e-3) & (i > 0)
    assert cv.sum() > 50  # a CV phase happened, holding 4.2 V ...
    assert i[cv].max() <= 2.5 + 1e-6 and i[cv].min() < 0.3  # ... with the current tapering to the cut-off
    assert v.max() < 4.2 + 0.01 and v[i < 0].min() > 2.5 - 0.05
    assert np.all(r.k == len(r.program.labels) - 1)  # after N cycles the cells rest


def test_pulse_gives_r0_and_relaxation_gives_the_rc_pairs():
    chem_r0 = 0.022614758276094094  # nmc811 R0 at 50 % SOC
    r = rig(
        cells=1,
        chemistry="nmc811",
        initial_soc=0.5,
        protocol=[{"step": "rest", "s": 10}, {"step": "cc", "c_rate": -1.0, "s": 10}, {"step": "rest", "s": 600}],
    )
    v, i = [], []
    r.run(620, 0.1, every=lambda x: (v.append(x.voltage_v[0]), i.append(x.current_a[0])))
    v, i = np.array(v), np.array(i)
    first = int(np.flatnonzero(i < 0)[0])
    jump = v[first - 1] - v[first]  # first 0.1 s of the 5 A pulse: the ohmic drop plus a sliver of the RC pairs
    assert jump / 5.0 == pytest.approx(chem_r0, rel=0.05)
    # after the pulse the voltage relaxes back towards OCV over the RC time constants (tens to hundreds of s)
    after = v[int(np.flatnonzero(i < 0)[-1]) + 1 :]
    assert after[0] < after[300] < after[-1] and after[-1] - after[300] < after[300] - after[0]


def test_temperature_rises_under_load_and_cold_cells_sag_more():
    warm = rig(
        cells=1, chemistry="lfp", initial_soc=0.9, ambient_c=25.0, protocol=[{"step": "cc", "c_rate": -3.0, "s": 300}]
    )
    cold = rig(
        cells=1, chemistry="lfp", initial_soc=0.9, ambient_c=0.0, protocol=[{"step": "cc", "c_rate": -3.0, "s": 300}]
    )
    warm.run(300, 1.0)
    cold.run(300, 1.0)
    assert warm.temp_c[0] > 25.5
    assert cold.voltage_v[0] < warm.voltage_v[0] - 0.02  # Arrhenius resistances


def test_thermal_coupling_spreads_heat_to_neighbours():
    faults = [{"kind": "runaway_precursor", "cell": "c03", "w": 3.0, "doubling_s": 1e9}]
    free = rig(cells=5, chemistry="nmc811", initial_soc=0.5, protocol=[{"step": "rest"}], faults=faults)
    coupled = rig(
        cells=5, chemistry="nmc811", initial_soc=0.5, protocol=[{"step": "rest"}], faults=faults, coupling_w_k=0.5
    )
    free.run(1800, 5.0)
    coupled.run(1800, 5.0)
    assert free.temp_c[1] == pytest.approx(25.0, abs=0.01)
    assert coupled.temp_c[1] > 26.0 and coupled.temp_c[1] > coupled.temp_c[0]
    assert coupled.temp_c[2] < free.temp_c[2]


def test_lfp_hysteresis_separates_rest_voltage_after_charge_and_discharge():
    def rest_v(c_rate: float, hyst: bool) -> float:
        r = rig(
            cells=1,
            chemistry="lfp",
            initial_soc=0.5,
            hysteresis=hyst,
            protocol=[{"step": "cc", "c_rate": c_rate, "s": 360}, {"step": "rest", "s": 3600}],
        )
        r.run(3960, 2.0)
        return float(r.voltage_v[0])

    gap = rest_v(1.0, True) - rest_v(-1.0, True)
    assert gap > 0.012  # about twice hysteresis_v (plus the 20 % SOC difference on a flat plateau)
    assert rest_v(1.0, False) - rest_v(-1.0, False) < gap - 0.01


def test_severson_policy_steps_and_soc_switching():
    steps = severson_policy("5.4C(40%)-3.6C")
    assert steps[0] == {"step": "cc", "c_rate": 5.4, "until_soc": 0.4}
    assert steps[1] == {"step": "cc", "c_rate": 3.6, "until_soc": 0.8}
    assert [s["c_rate"] for s in severson_policy("3.6C-6.0C-5.6C-4.755C")[:4]] == [3.6, 6.0, 5.6, 4.755]
    r = rig(
        cells=1, chemistry="lfp", capacity_ah=1.1, initial_soc=0.0, protocol="severson:5.4C(40%)-3.6C", ambient_c=30.0
    )
    seen = []
    r.run(1500, 1.0, every=lambda x: seen.append((x.soc_counter[0], x.current_a[0])))
    soc, cur = np.array(seen).T
    at_54 = np.isclose(cur, 5.4 * 1.1)
    at_36 = np.isclose(cur, 3.6 * 1.1)
    assert soc[at_54].max() == pytest.approx(0.4, abs=0.01) and soc[at_36].min() == pytest.approx(0.4, abs=0.01)
    assert soc[at_36].max() == pytest.approx(0.8, abs=0.01)


def test_profile_csv_current_and_power(tmp_path):
    p = tmp_path / "drive.csv"
    p.write_text("time_s,current_a\n0,-2\n30,-2\n30.5,1\n60,1\n")
    r = rig(
        cells=2,
        chemistry="nmc811",
        initial_soc=0.6,
        protocol=[{"step": "profile", "csv": str(p)}, {"step": "rest", "s": 100}],
    )
    i = []
    r.run(60, 1.0, every=lambda x: i.append(x.current_a[0]))
    assert i[5] == pytest.approx(-2.0) and i[45] == pytest.approx(1.0)
    w = tmp_path / "power.csv"
    w.write_text("time_s,power_w\n0,-10\n100,-10\n")
    r = rig(cells=1, chemistry="nmc811", initial_soc=0.6, protocol=f"profile:{w}")
    r.run(50, 1.0)
    assert r.current_a[0] * r.voltage_v[0] == pytest.approx(-10.0, rel=0.02)


def test_hppc_and_repeat_blocks_compile():
    prog = compile_protocol("hppc", 5.0, 2.5, 4.2)
    assert len(prog.labels) == 3 + 9 * 6 + 2 + 1
    r = rig(
        cells=1,
        chemistry="nmc811",
        initial_soc=0.5,
        protocol=[{"repeat": 3, "steps": [{"step": "cc", "c_rate": -2.0, "s": 10}, {"step": "rest", "s": 20}]}],
        cycles=1,
    )
    i = []
    r.run(200, 1.0, every=lambda x: i.append(x.current_a[0]))
    assert np.sum(np.array(i) < 0) == 30 and r.cycle[0] == 1


@pytest.mark.parametrize(
    "spec, words",
    [
        ("severson:5.4C(40%)-3.6X", "3.6X"),
        ("severson:5.4C(95%)-3.6C", "0..80"),
        ("nope", "'nope'"),
        ([{"step": "cc", "c_rate": 1.0}, {"step": "cv", "v": 4.2}], "step 2 \\(cv\\): needs until_a"),
        ([{"step": "cc", "c_rate": 1.0, "untl_v": 4.0}], "unknown key.*untl_v"),
        ([{"step": "dance"}], "step 1: step = 'dance'"),
        ([{"step": "cc", "a": 1.0, "c_rate": 1.0}], "exactly one of a"),
        ([{"step": "rest", "s": -5}], "s = -5"),
        ([{"repeat": 0, "steps": [{"step": "rest", "s": 1}]}], "repeat"),
        ([{"step": "profile", "csv": "/nonexistent/x.csv"}], "x.csv.*cannot read"),
    ],
)
def test_bad_protocols_name_the_bad_item(spec, words):
    with pytest.raises(ProtocolError, match=words):
        compile_protocol(spec, 5.0, 2.5, 4.2)


def test_bad_profile_rows_name_the_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("time_s,current_a\n0,1\n1,abc\n")
    with pytest.raises(ProtocolError, match="bad.csv' line 3"):
        compile_protocol([{"step": "profile", "csv": str(p)}], 5.0, 2.5, 4.2)
