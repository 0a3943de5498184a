"""Writing a simulated dataset: readings, per-cycle summaries and Qd(V) as Parquet (pyarrow, [train] extra) or
CSV, plus a PNG summary (matplotlib, [train] extra). Readings stream to disk chunk by chunk (bounded memory)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np


class TableWriter:
    """Append column chunks to ``<dir>/<name>.parquet`` or ``.csv``."""

    def __init__(self, directory: Path, name: str, fmt: str, cell_ids: tuple[str, ...] | None = None):
        if fmt not in ("parquet", "csv"):
            raise ValueError(f"format must be parquet or csv, got {fmt!r}")
        self.path = directory / f"{name}.{fmt}"
        self.fmt = fmt
        self.cell_ids = np.array(cell_ids) if cell_ids is not None else None
        self._writer: Any = None
        self._csv: Any = None
        self.rows = 0

    def _named(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.cell_ids is not None and "cell" in cols:
            cols = {**cols, "cell": self.cell_ids[cols["cell"].astype(np.int64)]}
        return cols

    def write(self, cols: dict[str, np.ndarray]) -> None:
        cols = self._named(cols)
        n = len(next(iter(cols.values()))) if cols else 0
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({k: np.asarray(v) for k, v in cols.items()})
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            self._writer.write_table(table)
        else:
            if self._csv is None:
                self._file = open(self.path, "w", newline="")  # noqa: SIM115 - closed by close()
                self._csv = csv.writer(self._file)
                self._csv.writerow(list(cols))
            self._csv.writerows(zip(*[np.asarray(v).tolist() for v in cols.values()]))
        self.rows += n

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._csv is not None:
            self._file.close()


def write_qv(directory: Path, fmt: str, qv: dict[str, np.ndarray], cell_ids: tuple[str, ...]) -> Path:
    """Qd(V): one row per (cell, cycle), one column per grid voltage named q_ah_at_<V>."""
    w = TableWriter(directory, "qv", fmt, cell_ids)
    cols: dict[str, np.ndarray] = {"cell": qv["cell"], "cycle": qv["cycle"]}
    for j, v in enumerate(qv["grid_v"]):
        cols[f"q_ah_at_{v:.4f}"] = qv["q_ah"][:, j]
    w.write(cols)
    w.close()
    return w.path


def summary_png(
    path: Path,
    summaries: dict[str, np.ndarray],
    cell_ids: tuple[str, ...],
    curves: dict[str, Any],
    temps: np.ndarray | None,
    title: str,
) -> Path:
    """Capacity fade per cell, a discharge curve at start and end of life, temperature distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.5))
    knee = strongest_knee(summaries, len(cell_ids))
    for j in range(len(cell_ids)):
        m = summaries["cell"] == j
        style = {"lw": 2.0, "color": "k"} if knee is not None and j == knee[0] else {"lw": 0.8}
        ax[0].plot(summaries["cycle"][m], summaries["discharge_ah"][m], **style)
    if knee is not None:
        ax[0].axvline(knee[1], color="k", ls=":", lw=1)
        ax[0].annotate(
            f"{cell_ids[knee[0]]}: knee at cycle {knee[1]:.0f}, fade x{knee[2]:.1f}",
            (knee[1], float(np.nanmax(summaries["discharge_ah"]))),
            fontsize=8,
            va="top",
        )
    ax[0].set(xlabel="cycle", ylabel="discharge capacity (Ah)", title="capacity fade per cell")
    for label, (q, v) in curves.items():
        ax[1].plot(q, v, label=label)
    ax[1].set(xlabel="discharged (Ah)", ylabel="voltage (V)", title="discharge curve, start and end of life")
    if curves:
        ax[1].legend()
    t = temps if temps is not None and temps.size else summaries["temperature_max_c"]
    ax[2].hist(t[np.isfinite(t)], bins=40)
    ax[2].set(
        xlabel="temperature (°C)",
        ylabel="count",
        title="temperature distribution" + ("" if temps is not None and temps.size else " (cycle max)"),
    )
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def strongest_knee(
    summaries: dict[str, np.ndarray], n_cells: int, max_cells: int = 200
) -> tuple[int, float, float] | None:
    """(cell, onset cycle, fade after / fade before) of the cell whose fade accelerates most, if any accelerates
    at least 1.5-fold (a knee; ``simulator.plating.knee_onset``); None otherwise."""
    from simulator.plating import knee_onset

    best = None
    for j in range(min(n_cells, max_cells)):
        m = summaries["cell"] == j
        if m.sum() < 8:
            continue
        onset, before, after = knee_onset(summaries["cycle"][m], summaries["discharge_ah"][m])
        if before < 0 and after < 1.5 * before and (best is None or after / before > best[2]):
            best = (j, onset, after / before)
    return best
