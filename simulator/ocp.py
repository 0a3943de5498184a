"""Half-cell open-circuit potentials (V vs Li/Li+) as functions of stoichiometry, from published parameter sets.

Degradation modes (loss of lithium inventory, loss of active material on either electrode) change a cell's OCV by
shifting and shrinking the two electrodes' windows against each other, so the simulator needs each electrode's
potential, not just the full-cell OCV table. Functions are the published fits as carried by PyBaMM's parameter sets
(cited per function); the simulator tabulates them once (``tabulate``) and interpolates on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np


def graphite_chen2020(x: np.ndarray) -> np.ndarray:
    """LG M50 graphite(-SiOx), Chen et al., J. Electrochem. Soc. 167 080534 (2020), as in PyBaMM's Chen2020 set."""
    return (
        1.9793 * np.exp(-39.3631 * x)
        + 0.2482
        - 0.0909 * np.tanh(29.8538 * (x - 0.1234))
        - 0.04478 * np.tanh(14.9159 * (x - 0.2769))
        - 0.0205 * np.tanh(30.4444 * (x - 0.6103))
    )


def nmc811_chen2020(y: np.ndarray) -> np.ndarray:
    """LG M50 NMC811, Chen et al. 2020 (PyBaMM Chen2020)."""
    return (
        -0.809 * y
        + 4.4875
        - 0.0428 * np.tanh(18.5138 * (y - 0.5542))
        - 17.7326 * np.tanh(15.789 * (y - 0.3117))
        + 17.5842 * np.tanh(15.9308 * (y - 0.312))
    )


def lfp_afshar2017(y: np.ndarray) -> np.ndarray:
    """LFP, Afshar et al. 2017 (arXiv:1709.03970), the LFP OCP of PyBaMM's Prada2013 set (A123 ANR26650)."""
    return 3.4077 - 0.020269 * y + 0.5 * np.exp(-150.0 * y) - 0.9 * np.exp(-30.0 * (1.0 - y))


def graphite_ramadass2004(x: np.ndarray) -> np.ndarray:
    """MCMB graphite, Ramadass et al., J. Electrochem. Soc. 151 A196 (2004) (PyBaMM Ramadass2004, Sony 18650)."""
    x = np.maximum(x, 1e-4)
    return (
        0.7222
        + 0.1387 * x
        + 0.029 * np.sqrt(x)
        - 0.0172 / x
        + 0.0019 / x**1.5
        + 0.2808 * np.exp(0.9 - 15.0 * x)
        - 0.7984 * np.exp(0.4465 * x - 0.4108)
    )


def lco_ramadass2004(y: np.ndarray) -> np.ndarray:
    """LiCoO2, Ramadass et al. 2004 (PyBaMM Ramadass2004), with PyBaMM's overhang stretch of 1.13."""
    s = 1.13 * np.asarray(y)
    s2 = s * s
    num = -4.656 + 88.669 * s2 - 401.119 * s2**2 + 342.909 * s2**3 - 462.471 * s2**4 + 433.434 * s2**5
    den = -1.0 + 18.933 * s2 - 79.532 * s2**2 + 37.311 * s2**3 - 73.083 * s2**4 + 95.96 * s2**5
    return num / den


FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "graphite_chen2020": graphite_chen2020,
    "nmc811_chen2020": nmc811_chen2020,
    "lfp_afshar2017": lfp_afshar2017,
    "graphite_ramadass2004": graphite_ramadass2004,
    "lco_ramadass2004": lco_ramadass2004,
}
# Stoichiometry range where each published fit is meaningful; outside it the table continues with a steep linear
# wall (an electrode driven past its range), so aged or oddly aligned cells never see the fits' poles.
VALID: dict[str, tuple[float, float]] = {
    "graphite_ramadass2004": (0.01, 1.0),
    "lco_ramadass2004": (0.40, 0.8849),  # the rational fit has poles at y ~ 0.245, 0.375 and 0.8896
}
WALL_V_PER_UNIT = 10.0
GRID_MARGIN = 0.25  # the walls continue past 0 and 1 (an over-lithiated negative plates: the OCV rises steeply)
GRID_POINTS = 1501


@cache
def tabulate(name: str, n: int = GRID_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(stoichiometry grid -0.25..1.25, potential) for ``np.interp``: monotonically decreasing (lithiation lowers an
    electrode's potential); ValueError names unknown functions."""
    try:
        fn = FUNCTIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown electrode potential function {name!r}; known: {', '.join(sorted(FUNCTIONS))}"
        ) from None
    lo, hi = VALID.get(name, (0.0, 1.0))
    grid = np.linspace(-GRID_MARGIN, 1.0 + GRID_MARGIN, n)
    inside = np.clip(grid, lo, hi)
    u = fn(inside) + WALL_V_PER_UNIT * (lo - np.minimum(grid, lo)) - WALL_V_PER_UNIT * (np.maximum(grid, hi) - hi)
    u = np.minimum.accumulate(u)
    grid.setflags(write=False)
    u.setflags(write=False)
    return grid, u


def potential(name: str, s: np.ndarray) -> np.ndarray:
    """Electrode potential from the sanitised table (what the simulator uses)."""
    g, u = tabulate(name)
    return np.interp(s, g, u)
