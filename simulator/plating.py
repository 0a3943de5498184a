"""Lithium plating once the negative electrode runs out of room at the end of charge: the knee.

Attia et al. 2022 ("Knees in lithium-ion battery aging trajectories", J. Electrochem. Soc. 169 060517) review the
pathways to a knee; the one modelled here is plating driven by the shrinking margin of the negative electrode
(Anseán et al. 2017, Dubarry et al. 2018), with the pore-clogging feedback of O'Kane et al. 2022:

* the negative electrode's free room at the end of charge, ``margin = (Q_neg - q_top) / Q_neg,fresh`` (q_top: its
  lithium at v_max, from the electrode model ``simulator.cell``), shrinks as LAM_NE outpaces LLI: SEI growth slows
  with time (a power law below 1) while particle cracking removes graphite at a steady rate per cycle;
* plating per charged equivalent full cycle grows exponentially as the margin falls below an onset that rises with
  the charge rate (the particle surface fills before its bulk) and with the lithium already plated (dead lithium and
  its SEI clog the pores next to the separator: more overpotential, more plating - the feedback that bends the knee),
  up to ``clog_max_loss`` of plating (beyond the range the law was calibrated on, the exponential feedback ran away:
  a cell fell from 54 % to 5 % of its capacity within 80 EFC, far faster than any of Baumhoefer's cells);
* plated lithium is lost (LLI) and part of the graphite it buries is lost with it (LAM_NE per unit of plating).

The rate law and its constants are fitted to PyBaMM's OKane2022 DFN (``cloud/knee_calibration.py`` makes the
reference and the fit; ``simulator/params/nmc811.json`` carries the result). Cells differ in their negative
electrode's excess (production spread of the N/P ratio): ``margin_sd`` spreads the onset, so a fleet's knees begin
at different times, as Baumhoefer et al. 2014's 48 cells do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.chemistry import R_GAS, T_REF_C

if TYPE_CHECKING:
    from simulator.ageing import Stress
    from simulator.cell import CellArray

KEYS = {
    "k": "plating loss rate at the onset (fraction of the cell's capacity per charged EFC)",
    "margin_onset": "free room of the negative electrode at the end of charge where plating runs at k (fraction)",
    "margin_per_c": "onset added per C of charge rate",
    "width": "margin over which the rate changes e-fold (fraction)",
    "clog_per_loss": "onset added per unit of plating loss (pore clogging: the knee's feedback)",
    "clog_max_loss": "plating loss beyond which clogging adds no more (the calibrated range; past it the feedback ran away)",
    "lam_ne_per_loss": "LAM_NE (fraction of the negative electrode) per unit of plating loss",
    "ea_j_mol": "Arrhenius activation energy (negative: plating is faster cold)",
    "margin_sd": "cell-to-cell standard deviation of the onset (the N/P spread)",
}
DEFAULTS = {
    "margin_per_c": 0.0,
    "clog_per_loss": 0.0,
    "clog_max_loss": 1.0,
    "lam_ne_per_loss": 0.0,
    "ea_j_mol": 0.0,
    "margin_sd": 0.0,
}
_T_REF_K = T_REF_C + 273.15


class Plating:
    """Plating state of N cells: cumulative plating loss (fraction of capacity) and each cell's onset offset."""

    def __init__(self, params: dict[str, Any], n: int, rng: np.random.Generator):
        bad = set(params) - set(KEYS) - {"source"}
        missing = {"k", "margin_onset", "width"} - set(params)
        if bad or missing:
            raise ValueError(
                f"ageing plating: unknown key(s) {sorted(bad)}, missing {sorted(missing)}; known: {', '.join(KEYS)}"
            )
        p = {**DEFAULTS, **params}
        for key in KEYS:
            try:
                finite = np.all(np.isfinite(np.asarray(p[key], dtype=float)))
            except (TypeError, ValueError):
                finite = False
            if not finite:
                raise ValueError(f"ageing plating: {key} must be a finite number, got {p[key]!r}")
        if np.any(np.asarray(p["k"]) < 0) or np.any(np.asarray(p["width"]) <= 0):
            raise ValueError("ageing plating: k must not be negative and width must be positive")
        self.p = p
        sd = float(np.max(p["margin_sd"]))
        self.offset = rng.normal(0.0, 1.0, n) * p["margin_sd"] if sd > 0 else np.zeros(n)
        self.loss = np.zeros(n)

    def margin(self, cells: CellArray) -> np.ndarray:
        """Free room of each cell's negative electrode at v_max, as a fraction of its fresh capacity."""
        return (cells.qn - cells.q_hi) / cells.qn0

    def onset(self, c_chg: np.ndarray) -> np.ndarray:
        p = self.p
        clog = p["clog_per_loss"] * np.minimum(self.loss, p["clog_max_loss"])
        return p["margin_onset"] + self.offset + p["margin_per_c"] * c_chg + clog

    def update(self, s: Stress, cells: CellArray, acceleration: float) -> dict[str, np.ndarray]:
        """Mode increments (LLI, LAM_NE) of this interval's charging."""
        p = self.p
        efc_chg = s.efc_chg if s.efc_chg is not None else s.efc
        arrh = np.exp(-p["ea_j_mol"] / R_GAS * (1.0 / s.t_k - 1.0 / _T_REF_K))
        drive = np.clip((self.onset(s.c_chg) - self.margin(cells)) / p["width"], -60.0, 60.0)
        # an explicit step: bounded by half the width, as plating's own lithium loss widens the margin it feeds on
        d = np.minimum(p["k"] * arrh * np.exp(drive) * efc_chg * acceleration, 0.5 * p["width"])
        self.loss = self.loss + d
        return {"lli": d, "lam_ne": p["lam_ne_per_loss"] * d}


def knee_onset(cycles: np.ndarray, capacity_ah: np.ndarray, floor: float = 0.65) -> tuple[float, float, float]:
    """(onset cycle, slope before, slope after) of a knee in a capacity trajectory: the breakpoint of the best
    continuous two-line fit whose second line falls faster than the first, over the capacity while it is above
    ``floor`` of its first value (a grid of 200 breakpoints). A line-to-line fit, not a curvature peak: stable on
    sparse checkpoints (Baumhoefer: ~16 a cell). NaNs when no break accelerates the fade (no knee)."""
    ok = np.isfinite(capacity_ah)
    c, q = np.asarray(cycles, float)[ok], np.asarray(capacity_ah, float)[ok]
    keep = q >= floor * q[0]
    c, q = c[keep], q[keep]
    nan = (float("nan"),) * 3
    if c.size < 4:
        return nan
    b = np.linspace(c[1], c[-2], 200)
    x = np.stack([np.ones((b.size, c.size)), np.broadcast_to(c, (b.size, c.size)), np.maximum(c - b[:, None], 0.0)], -1)
    xtx = np.einsum("bni,bnj->bij", x, x)
    xty = np.einsum("bni,n->bi", x, q)
    good = np.abs(np.linalg.det(xtx)) > 1e-12 * np.abs(xtx).max()
    beta = np.full((b.size, 3), np.nan)
    beta[good] = np.linalg.solve(xtx[good], xty[good][..., None])[..., 0]
    sse = np.sum((np.einsum("bni,bi->bn", x, beta) - q) ** 2, axis=1)
    sse[~(beta[:, 2] < 0)] = np.inf  # the second line must fall faster: a knee, not a fade that slows down
    if not np.isfinite(sse).any():
        return nan
    j = int(np.argmin(sse))
    return float(b[j]), float(beta[j, 1]), float(beta[j, 1] + beta[j, 2])
