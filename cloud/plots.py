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


def soh(report: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    cells = report["cells"]
    cols = min(2, len(cells))
    rows = (len(cells) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4 * rows), squeeze=False)
    for ax, c in zip(axes.ravel(), cells):
        s = c["_series"]
        ax.plot(s["cycles"], s["actual"], ".", ms=3, c="k", label="measured")
        ax.plot(
            s["forecast_cycles"],
            s["forecast"],
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
        ax.set_title(c["cell"])
        ax.set_xlabel("cycle")
        ax.set_ylabel("capacity (Ah)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(cells) :]:
        ax.axis("off")
    fig.suptitle(f"Capacity fade: predicted vs actual ({report['mode']}, from {report['from_fraction']:.0%})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
