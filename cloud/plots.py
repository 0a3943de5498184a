"""PNG plots of evaluations: predicted vs actual cycle life; predicted vs actual capacity fade per cell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cycle_life(report: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    cells = report["cells"]
    a = np.array([c["actual"] for c in cells])
    p = np.array([c["predicted"] for c in cells])
    b = np.array([c["baseline_predicted"] for c in cells])
    fig, ax = plt.subplots(figsize=(6, 6))
    lo, hi = 0, max(a.max(), p.max(), b.max()) * 1.05
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="ideal")
    ax.scatter(
        a, b, marker="x", c="tab:gray", label=f"variance baseline (RMSE {report['baseline']['rmse_cycles']:.0f})"
    )
    ax.scatter(a, p, c="tab:blue", label=f"model (RMSE {report['rmse_cycles']:.0f}, MAPE {report['mape_pct']:.1f}%)")
    ax.set_xlabel("actual cycle life (cycles)")
    ax.set_ylabel("predicted cycle life (cycles)")
    ax.set_title(f"Early cycle-life prediction, {report['n_cells']} cells")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


SOH_MAX_PANELS = 6


def _soh_panels(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All cells if few; else the best, the worst and cells at evenly spaced ranks of the ratio to the baseline."""
    if len(cells) <= SOH_MAX_PANELS:
        return cells
    ranked = sorted(cells, key=lambda c: c["ratio_to_baseline"] if c["ratio_to_baseline"] is not None else 0.0)
    picks = sorted({round(k * (len(ranked) - 1) / (SOH_MAX_PANELS - 1)) for k in range(SOH_MAX_PANELS)})
    return [ranked[i] for i in picks]


def soh(report: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    cells = _soh_panels(report["cells"])
    cols = min(2, len(cells))
    rows = (len(cells) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4 * rows), squeeze=False)
    for ax, c in zip(axes.ravel(), cells):
        s = c["_series"]
        ax.fill_between(
            s["dense_cycles"],
            s["dense_lower"],
            s["dense_upper"],
            color="tab:blue",
            alpha=0.18,
            lw=0,
            label=f"10-90 % band (holds {c['interval_coverage']:.0%} of the points)",
        )
        ax.plot(s["cycles"], s["actual"], ".", ms=4, c="k", label="measured")
        ax.plot(
            s["dense_cycles"],
            s["dense_forecast"],
            c="tab:blue",
            lw=2,
            label=f"forecast (RMSE {c['rmse_ah'] * 1000:.0f} mAh)",
        )
        ax.plot(
            s["forecast_cycles"],
            s["baseline"],
            "--",
            c="tab:gray",
            label=f"linear baseline ({c['baseline_rmse_ah'] * 1000:.0f} mAh)",
        )
        ax.axvline(c["origin_cycle"], c="tab:green", lw=1, ls=":", label="forecast origin")
        ax.axhline(report["eol_capacity_ah"], c="tab:red", lw=1, ls=":", label="end of life")
        if c["eol_cycle_lower"] is not None and c["eol_cycle_upper"] is not None:
            ax.axvspan(c["eol_cycle_lower"], c["eol_cycle_upper"], color="tab:red", alpha=0.08)
        if c["eol_cycle_predicted"] is not None:
            ax.axvline(
                c["eol_cycle_predicted"],
                c="tab:red",
                lw=1,
                label=f"EOL predicted {c['eol_cycle_predicted']:.0f}, actual "
                + (f"{c['eol_cycle_actual']:.0f}" if c["eol_cycle_actual"] is not None else "not reached"),
            )
        ratio = c["ratio_to_baseline"]
        ax.set_title(f"{c['cell']}" + (f" (ratio to baseline {ratio:.2f})" if ratio is not None else ""))
        ax.set_xlabel("cycle")
        ax.set_ylabel("capacity (Ah)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(cells) :]:
        ax.axis("off")
    shown = "" if len(cells) == len(report["cells"]) else f"; {len(cells)} of {len(report['cells'])} cells, by rank"
    fig.suptitle(f"Capacity fade: predicted vs actual ({report['mode']}, from {report['from_fraction']:.0%}{shown})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
