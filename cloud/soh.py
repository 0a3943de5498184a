"""SOH forecaster training: reference trajectories from finished cells, the rule's parameters, the model files.

The method (``agent.inference.soh``) forecasts a cell from the trajectories of its sister cells, each aligned on the
cell's current capacity and read at a fitted rate, weighted by how well it reproduces the cell's history. Training is
therefore mostly data preparation: each finished cell's capacity history is cleaned (``agent.features.soh``),
expressed as a fraction of its nominal capacity, made non-increasing (isotonic regression: capacity regeneration
after rests is a transient the forecast should not replay), and resampled on ``GRID_POINTS`` equal steps of cycles.

The rule is fixed here, not searched per data set: the parameters below were chosen on Baumhoefer's 48 cells and
on random four-cell subsets of them (docs/models.md, "SOH"); the one parameter that follows the data is the width of
the prior on the rate, ``RATE_SIGMA_ONE / sqrt(number of references)``: with many sisters one of them already ages
at the cell's rate, so the rate stays near 1; with three, the cell's own history must set it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from agent.features import soh as F
from agent.inference.soh import FORMAT
from cloud.datasets.capacity import CapacityHistory

GRID_POINTS = 160
MAX_POINTS = 16  # history points the forecaster fits (longer histories are condensed to bin means)
BANDWIDTH = 1.8  # kernel width in units of the best member's history RMSE
NOISE_FLOOR = 0.002  # of nominal: the RMSE below which two fits count as equally good
LEVEL_POINTS = 2
RATES = tuple(float(np.round(v, 6)) for v in np.exp(np.linspace(-0.7, 0.7, 15)))
RATE_SIGMA_ONE = 0.69
SHIFTS = 31
SHIFT_WINDOW = 0.3
# A coarse model (the shipped default) runs on every cycle of every cell of a rig: a coarser grid keeps it cheap (the
# rate is centred on the cell's own fade anyway, see agent.inference.soh). It keeps the rate prior: leaving the rate
# free (an earlier default) let knee references read slowly match a knee-free cell's history (docs/models.md).
GENERIC_RATES = tuple(float(np.round(v, 6)) for v in np.exp(np.linspace(-0.4, 0.4, 9)))
GENERIC_SHIFTS = 21
GENERIC_SHIFT_WINDOW = 0.2
TOP_K = 64
QUANTILES = (0.1, 0.9)
TAIL_FRACTION = 0.2  # the extension past a reference's last cycle follows the slope of its last 20 %
FAMILY = "soh"
FORMAT_VERSION = 2


def _isotonic_decreasing(y: np.ndarray) -> np.ndarray:
    """Least-squares non-increasing fit (pool adjacent violators)."""
    means: list[float] = []
    counts: list[int] = []
    for v in np.asarray(y, dtype=float):
        means.append(float(v))
        counts.append(1)
        while len(means) > 1 and means[-2] < means[-1]:  # a rise: pool the two blocks
            n = counts[-2] + counts[-1]
            means[-2] = (means[-2] * counts[-2] + means[-1] * counts[-1]) / n
            counts[-2] = n
            means.pop()
            counts.pop()
    return np.repeat(means, counts)


def reference(h: CapacityHistory, nominal_ah: float) -> dict[str, Any]:
    """One finished cell as a reference trajectory (fraction of nominal on a uniform grid of cycles)."""
    prep = F.prepare(h.cycle[None, :], h.capacity_ah[None, :], max(len(h), 1))
    ok = prep.valid[0]
    c, q = prep.cycle[0, ok], prep.capacity_ah[0, ok] / nominal_ah
    if c.size < F.MIN_POINTS or c[-1] <= c[0]:
        raise ValueError(f"cell {h.cell}: {c.size} usable points, too few to serve as a reference")
    q = _isotonic_decreasing(q)
    grid = np.linspace(c[0], c[-1], GRID_POINTS)
    qg = np.interp(grid, c, q)
    n_tail = max(2, int(np.ceil(c.size * TAIL_FRACTION)))
    tail = float(min(np.polyfit(c[-n_tail:], q[-n_tail:], 1)[0], 0.0)) if np.ptp(c[-n_tail:]) > 0 else 0.0
    return {
        "cell": h.cell,
        "t0": float(c[0]),
        "dt": float(grid[1] - grid[0]),
        "tail_slope": round(tail, 9),
        "q": [round(float(v), 6) for v in qg],
    }


def fit(histories: list[CapacityHistory], nominal_ah: float | dict[str, float], coarse: bool = False) -> dict[str, Any]:
    """The model (a JSON-ready dict) from finished cells; ``nominal_ah`` per cell or one for all."""
    if not histories:
        raise ValueError("no training histories")
    nominal = nominal_ah if isinstance(nominal_ah, dict) else {h.cell: float(nominal_ah) for h in histories}
    return assemble([reference(h, nominal[h.cell]) for h in histories], coarse)


def assemble(refs: list[dict[str, Any]], coarse: bool = False) -> dict[str, Any]:
    """The model from reference trajectories (``reference``).

    The rate prior is log-normal with width RATE_SIGMA_ONE / sqrt(references): with many references one of them
    already ages at the cell's rate, and references that must be read much faster or slower than they aged (another
    cell type, another test) lose weight. ``coarse``: the cheaper grid of the shipped default, which runs on every
    cell of a rig on every cycle."""
    if not refs:
        raise ValueError("no reference trajectories")
    return {
        "format": FORMAT,
        "params": {
            "max_points": MAX_POINTS,
            "bandwidth": BANDWIDTH,
            "noise_floor": NOISE_FLOOR,
            "level_points": LEVEL_POINTS,
            "rates": list(GENERIC_RATES if coarse else RATES),
            "rate_sigma": round(RATE_SIGMA_ONE / np.sqrt(len(refs)), 6),
            "shifts": GENERIC_SHIFTS if coarse else SHIFTS,
            "shift_window": GENERIC_SHIFT_WINDOW if coarse else SHIFT_WINDOW,
            "top_k": TOP_K,
            "lower_quantile": QUANTILES[0],
            "upper_quantile": QUANTILES[1],
        },
        "references": refs,
    }


def model_bytes(model: dict[str, Any]) -> bytes:
    return (json.dumps(model, separators=(",", ":"), sort_keys=True) + "\n").encode()


def export(
    model: dict[str, Any], out_dir: Path, name: str, training: dict[str, Any], metrics: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``<name>.refs`` (the model) and ``<name>.json`` (metadata with the model's SHA-256 and version)."""
    from cloud.onnx_export import _jsonable

    data = model_bytes(model)
    digest = hashlib.sha256(data).hexdigest()
    version = f"{FAMILY}-v{FORMAT_VERSION}-{digest[:12]}"
    meta = {
        "name": name,
        "family": FAMILY,
        "version": version,
        "format_version": FORMAT_VERSION,
        "task": "capacity forecast with a 10-90 % band and end-of-life cycle, from sister-cell trajectories",
        "method": "sister-cell trajectories aligned on the cell's current capacity, read at a fitted rate, "
        "weighted by their fit to the cell's history (agent/inference/soh.py)",
        "model_file": f"{name}.refs",
        "inputs": [
            {"name": "cycle", "shape": ["cells", "T"], "unit": "cycle", "note": "any order; NaN = none"},
            {"name": "capacity_ah", "shape": ["cells", "T"], "unit": "Ah"},
            {"name": "nominal_ah", "shape": ["cells"], "unit": "Ah"},
            {"name": "horizons", "shape": ["H"], "unit": "cycles after the latest cycle"},
            {"name": "eol_capacity_ah", "shape": ["cells"], "unit": "Ah"},
        ],
        "outputs": [
            {"name": "capacity_ah", "unit": "Ah", "shape": ["cells", "H"], "note": "weighted median of the members"},
            {"name": "lower_ah", "unit": "Ah", "shape": ["cells", "H"], "note": f"{QUANTILES[0]:.0%} percentile"},
            {"name": "upper_ah", "unit": "Ah", "shape": ["cells", "H"], "note": f"{QUANTILES[1]:.0%} percentile"},
            {"name": "eol_cycle", "unit": "cycle", "shape": ["cells"], "note": "median; eol_lower / eol_upper"},
        ],
        "applies_to": {
            "capacity": "discharge capacity per cycle or at reference checkpoints, cycle numbers counted as in the "
            "references (full cycles from the start of life)",
            "references": [r["cell"] for r in model["references"]],
        },
        "hyperparameters": {k: v for k, v in model["params"].items()},
        "training_data": training,
        "metrics": metrics or {},
        "model_sha256": digest,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.refs").write_bytes(data)
    (out_dir / f"{name}.json").write_text(json.dumps(_jsonable(meta), indent=2) + "\n")
    return meta
