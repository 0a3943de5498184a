"""The few-sister check: leave-one-cell-out inside many random small subsets of a cell population.

A lab (or a held-out test) often has only a handful of sister cells: each forecast is then built from three or four
references. Running the same leave-one-cell-out as ``evaluate soh`` inside random subsets of ``size`` cells of a
larger population (Baumhoefer's 48) measures how the method does in that situation, on cells it never saw:
per-cell ratio to the linear baseline, end-of-life error, interval coverage, and the fraction of subsets in which
*every* cell meets the per-cell goals (ratio <= ``max_ratio`` and end-of-life error <= ``max_eol_error``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cloud.datasets.capacity import CapacityHistory
from cloud.evaluate import evaluate_soh

KEYS = ("ratio_to_baseline", "eol_error_cycles", "interval_coverage", "eol_within_interval")


def evaluate_subsets(
    cells: list[CapacityHistory],
    nominal_ah: float,
    eol_fraction: float,
    from_fraction: float,
    size: int,
    repeats: int,
    seed: int = 0,
    max_ratio: float = 0.5,
    max_eol_error: float = 75.0,
) -> dict[str, Any]:
    if not 2 <= size <= len(cells):
        raise ValueError(f"--subsets must be between 2 and the number of cells ({len(cells)})")
    rng = np.random.default_rng(seed)
    per_cell: list[dict[str, Any]] = []
    subsets_ok = []
    for rep in range(repeats):
        pick = sorted(rng.choice(len(cells), size, replace=False).tolist())
        report = evaluate_soh([cells[i] for i in pick], nominal_ah, eol_fraction, from_fraction)
        rows = [{"subset": rep, "cell": c["cell"], **{k: c[k] for k in KEYS}} for c in report["cells"]]
        per_cell += rows
        subsets_ok.append(all(_cell_ok(r, max_ratio, max_eol_error) for r in rows))
    ratio = np.array([r["ratio_to_baseline"] for r in per_cell if r["ratio_to_baseline"] is not None])
    eol = np.array([abs(r["eol_error_cycles"]) for r in per_cell if r["eol_error_cycles"] is not None])
    cov = np.array([r["interval_coverage"] for r in per_cell])
    eol_in = [r["eol_within_interval"] for r in per_cell if r["eol_within_interval"] is not None]
    return {
        "task": "soh-subsets",
        "subset_size": size,
        "repeats": repeats,
        "seed": seed,
        "nominal_ah": nominal_ah,
        "eol_fraction": eol_fraction,
        "from_fraction": from_fraction,
        "n_forecasts": len(per_cell),
        "ratio_to_baseline_median": float(np.median(ratio)),
        "ratio_to_baseline_p90": float(np.percentile(ratio, 90)),
        "ratio_to_baseline_max": float(ratio.max()),
        "fraction_ratio_le_goal": float(np.mean(ratio <= max_ratio)),
        "eol_abs_error_median_cycles": float(np.median(eol)) if eol.size else None,
        "eol_abs_error_p90_cycles": float(np.percentile(eol, 90)) if eol.size else None,
        "fraction_eol_within_goal": float(np.mean(eol <= max_eol_error)) if eol.size else None,
        "interval_coverage_mean": float(cov.mean()),
        "eol_interval_coverage": float(np.mean(eol_in)) if eol_in else None,
        "fraction_subsets_all_cells_meet_goals": float(np.mean(subsets_ok)),
        "goals": {"max_ratio": max_ratio, "max_eol_error_cycles": max_eol_error},
        "forecasts": per_cell,
    }


def _cell_ok(row: dict[str, Any], max_ratio: float, max_eol_error: float) -> bool:
    ratio, err = row["ratio_to_baseline"], row["eol_error_cycles"]
    return ratio is not None and ratio <= max_ratio and err is not None and abs(err) <= max_eol_error
