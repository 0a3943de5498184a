"""Chemistries: the published OCV tables, the electrode model behind them, temperature and refusal of bad params."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from simulator.cell import CellArray
from simulator.chemistry import available, chemistry_from_dict, get_chemistry


def test_three_chemistries_with_sources():
    assert {"nmc811", "lfp", "lco"} <= set(available())
    for name in ("nmc811", "lfp", "lco"):
        c = get_chemistry(name)
        assert c.source and c.provenance, name
        # every file says what is model-derived, fitted or a placeholder
        text = " ".join(c.provenance.values()).lower()
        assert any(w in text for w in ("model-derived", "placeholder", "fitted")), name


@pytest.mark.parametrize("name", ["nmc811", "lfp", "lco"])
def test_electrode_model_reproduces_the_ocv_table_at_beginning_of_life(name):
    """The simulator's cell (U_pos(y) - U_neg(x)) and the twin's table (ocv(soc)) agree on a fresh cell."""
    chem = get_chemistry(name)
    soc = chem.ocv_soc[1:-1]  # the table's own points (between them the table is linear, the electrodes not)
    cells = CellArray(chem, soc.size, np.random.default_rng(0), initial_soc=soc, capacity_cv=0, resistance_cv=0)
    assert np.max(np.abs(cells.ocv() - chem.ocv(soc))) < 0.005
    assert np.allclose(cells.capacity_ah, chem.nominal_capacity_ah, rtol=0.03)


def test_legacy_signatures_and_temperature_dependence():
    c = get_chemistry("nmc811")
    soc = np.array([0.2, 0.5, 0.8])
    rc25 = c.rc_at(soc)
    assert set(rc25) == {"r0_ohm", "r1_ohm", "tau1_s", "r2_ohm", "tau2_s"}
    assert np.allclose(rc25["r0_ohm"], c.r0_ohm)  # the table points themselves at 25 degC
    cold, hot = c.rc_at(soc, temperature_c=0.0), c.rc_at(soc, temperature_c=45.0)
    assert np.all(cold["r0_ohm"] > rc25["r0_ohm"]) and np.all(hot["r0_ohm"] < rc25["r0_ohm"])
    # Arrhenius: ln(R(T)/R(25)) = Ea/R (1/T - 1/298.15)
    expect = np.exp(c.ea_rc_j_mol / 8.314462618 * (1 / 273.15 - 1 / 298.15))
    assert np.allclose(cold["r1_ohm"] / rc25["r1_ohm"], expect)
    assert np.allclose(c.ocv(soc), c.ocv(soc, temperature_c=25.0))
    assert c.docv_dsoc(np.array([0.5]))[0] > 0
    assert c.nominal_capacity_ah == 5.0 and c.v_min == 2.5 and c.v_max == 4.2


def test_lfp_hysteresis_option():
    c = get_chemistry("lfp")
    assert c.hysteresis_v > 0
    up, down = c.ocv_hysteresis(0.5, 1.0), c.ocv_hysteresis(0.5, -1.0)
    assert up - down == pytest.approx(2 * c.hysteresis_v)


def _raw(name: str) -> dict:
    return json.loads(resources.files("simulator.params").joinpath(f"{name}.json").read_text())


@pytest.mark.parametrize(
    "change, words",
    [
        ({"nominal_capacity_ah": -1.0}, "nominal_capacity_ah"),
        ({"ocv_soc": [-0.1] + [0.05 * i for i in range(1, 21)]}, "ocv_soc"),
        ({"rc_soc": [0.2, 0.5, 1.3]}, "rc_soc"),
        ({"r0_ohm": [0.02, -0.01, 0.02]}, "r0_ohm"),
        ({"v_min": 4.5}, "v_min"),
        (
            {
                "electrodes": {
                    "negative": "graphite_chen2020",
                    "positive": "nmc811_chen2020",
                    "x0": 0.9,
                    "x100": 0.1,
                    "y0": 0.85,
                    "y100": 0.26,
                }
            },
            "stoichiometr",
        ),
    ],
)
def test_impossible_parameters_are_refused_naming_them(change, words):
    raw = {**_raw("nmc811"), **change}
    with pytest.raises(ValueError, match=words):
        chemistry_from_dict(raw)


def test_unknown_chemistry_names_the_known_ones():
    with pytest.raises(ValueError, match="nca.*known: lco, lfp, nmc811"):
        get_chemistry("nca")


def test_initial_soc_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="initial_soc"):
        CellArray(get_chemistry("lfp"), 2, np.random.default_rng(0), initial_soc=1.2)
