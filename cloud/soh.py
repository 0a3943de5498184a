"""SOH / capacity-fade forecaster: a damped trend whose damping is learned from other cells.

From a cell's capacity history the features (``agent.features.soh``) give the level L and trend slope s at the
origin. The forecast h cycles ahead is

    C(h) = L + s * ln(1 + lam*h) / lam,    lam = kappa * (-s) / L

the solution of dC/dh = s / (1 + lam*h): the fade rate decays hyperbolically, faster for cells that fade fast
relative to their capacity (a self-limiting, SEI-like fade), and never stops, so a cell always reaches end of
life eventually (an exponential damping would give it an asymptote). kappa (dimensionless) and the level
window are the only learned parameters: fitted on the training cells by minimising the mean RMSE of forecasts
made from every origin between 30% and 80% of each training cell's history. With a handful of cells in the real
data, a model with two parameters is what the data can support. s >= 0 (capacity not falling) gives a flat
forecast and no end of life.

End of life: the horizon where C(h) crosses the threshold, in closed form: h = (exp(lam*(C_eol - L)/s) - 1)/lam.
The same formulas are the ONNX graph (``to_onnx``), so the edge runs exactly what was evaluated here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agent.features import soh as F
from cloud.datasets.capacity import CapacityHistory

LAMBDA_FLOOR = 1e-9  # per cycle: below this the forecast is the straight line (and no division by zero)
SLOPE_CEIL = -1e-12  # Ah/cycle used for the EOL formula when the slope is not negative
KAPPA_GRID = np.round(np.linspace(0.0, 20.0, 201), 6)
LEVEL_WINDOWS = (5, 10, 20)
ORIGINS = (0.3, 0.8)
HISTORY_CYCLES = 500
MIN_CYCLES = 3


@dataclass
class DampedTrendSOH:
    kappa: float
    level_window: int
    history_cycles: int = HISTORY_CYCLES
    min_cycles: int = MIN_CYCLES
    fit_info: dict[str, Any] = field(default_factory=dict)

    def _parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        level, slope = x[:, 0:1], np.minimum(x[:, 1:2], 0.0)
        lam = np.maximum(self.kappa * (-slope) / np.maximum(level, 1e-9), LAMBDA_FLOOR)
        return level, slope, lam

    def forecast(self, x: np.ndarray, horizons: np.ndarray) -> np.ndarray:
        level, slope, lam = self._parts(x)
        h = np.asarray(horizons, dtype=float).reshape(1, -1)
        return level + slope * np.log(1.0 + lam * h) / lam

    def eol_ahead(self, x: np.ndarray, eol_capacity_ah: np.ndarray | float) -> np.ndarray:
        level, slope, lam = self._parts(x)
        eol = np.broadcast_to(np.asarray(eol_capacity_ah, dtype=float), (level.shape[0],)).reshape(-1, 1)
        s = np.minimum(slope, SLOPE_CEIL)
        with np.errstate(over="ignore"):
            h = (np.exp(lam * (eol - level) / s) - 1.0) / lam
        return np.maximum(h, 0.0)[:, 0]

    def features(self, history_ah: np.ndarray) -> np.ndarray:
        return F.compute(np.atleast_2d(history_ah)[:, -self.history_cycles :], self.level_window, self.min_cycles)

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return {
            "kappa": self.kappa,
            "level_window": self.level_window,
            "history_cycles": self.history_cycles,
            "min_cycles": self.min_cycles,
            "form": "C(h) = L + s*ln(1+lam*h)/lam, lam = kappa*(-s)/L",
            "kappa_grid": [float(KAPPA_GRID[0]), float(KAPPA_GRID[-1]), len(KAPPA_GRID)],
            "level_windows": list(LEVEL_WINDOWS),
            "training_origins_fraction": list(ORIGINS),
        }


def dense_history(h: CapacityHistory) -> np.ndarray:
    """Capacity indexed by cycle number from the first cycle (NaN where a cycle is missing)."""
    out = np.full(int(h.cycle[-1] - h.cycle[0] + 1), np.nan)
    out[h.cycle - h.cycle[0]] = h.capacity_ah
    return out


def _origin_samples(
    histories: list[CapacityHistory], level_window: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per training cell: (features at each origin [K,2], horizons [H], actual [K,H] with NaN past the end)."""
    out = []
    for h in histories:
        q = dense_history(h)
        n = q.size
        ks = np.arange(max(int(ORIGINS[0] * n), MIN_CYCLES), int(ORIGINS[1] * n))
        if ks.size == 0:
            continue
        hist = F.right_align([q[:k] for k in ks], width=int(ks.max()))
        x = F.compute(hist[:, -HISTORY_CYCLES:], level_window, MIN_CYCLES)
        horizons = np.arange(1, n - ks.min() + 1)
        idx = ks[:, None] - 1 + horizons[None, :]
        actual = np.where(idx < n, q[np.minimum(idx, n - 1)], np.nan)
        out.append((x, horizons, actual))
    return out


def fit(histories: list[CapacityHistory]) -> DampedTrendSOH:
    """Choose kappa and the level window on ``histories`` (training cells only). Deterministic grid search."""
    if not histories:
        raise ValueError("no training histories")
    best: tuple[float, float, int] | None = None
    for w in LEVEL_WINDOWS:
        samples = _origin_samples(histories, w)
        losses = np.zeros(KAPPA_GRID.size)
        count = 0
        for x, horizons, actual in samples:
            for j, kappa in enumerate(KAPPA_GRID):
                pred = DampedTrendSOH(float(kappa), w).forecast(x, horizons)
                err = np.where(np.isfinite(actual), (pred - actual) ** 2, np.nan)
                per_origin = np.sqrt(np.nanmean(err, axis=1))
                losses[j] += np.nansum(per_origin)
            count += x.shape[0]
        losses /= max(count, 1)
        j = int(np.argmin(losses))
        if best is None or losses[j] < best[0] - 1e-15:
            best = (float(losses[j]), float(KAPPA_GRID[j]), w)
    assert best is not None
    return DampedTrendSOH(
        best[1],
        best[2],
        fit_info={"training_loss_mean_rmse_ah": best[0], "training_cells": [h.cell for h in histories]},
    )


def to_onnx(model: DampedTrendSOH) -> onnx.ModelProto:
    """The forecaster as an ONNX graph (float64): features [N,2], horizon_cycles [H], eol_capacity_ah [N,1]."""
    c = lambda name, v: numpy_helper.from_array(np.asarray(v, dtype=np.float64), name)
    inits = [
        c("kappa", model.kappa),
        c("lam_floor", LAMBDA_FLOOR),
        c("zero", 0.0),
        c("one", 1.0),
        c("tiny", 1e-9),
        c("slope_ceil", SLOPE_CEIL),
        numpy_helper.from_array(np.array([0], np.int64), "i0"),
        numpy_helper.from_array(np.array([1], np.int64), "i1"),
        numpy_helper.from_array(np.array([2], np.int64), "i2"),
        numpy_helper.from_array(np.array([1, -1], np.int64), "row"),
    ]
    n = helper.make_node
    nodes = [
        n("Slice", ["features", "i0", "i1", "i1"], ["level"]),
        n("Slice", ["features", "i1", "i2", "i1"], ["slope_raw"]),
        n("Min", ["slope_raw", "zero"], ["slope"]),
        n("Neg", ["slope"], ["fade_rate"]),
        n("Max", ["level", "tiny"], ["level_pos"]),
        n("Div", ["fade_rate", "level_pos"], ["rel_rate"]),
        n("Mul", ["rel_rate", "kappa"], ["lam_raw"]),
        n("Max", ["lam_raw", "lam_floor"], ["lam"]),
        n("Reshape", ["horizon_cycles", "row"], ["h_row"]),
        n("Mul", ["lam", "h_row"], ["lam_h"]),
        n("Add", ["lam_h", "one"], ["one_plus"]),
        n("Log", ["one_plus"], ["log_term"]),
        n("Div", ["log_term", "lam"], ["shape"]),
        n("Mul", ["slope", "shape"], ["drop"]),
        n("Add", ["level", "drop"], ["capacity_ah"]),
        n("Min", ["slope", "slope_ceil"], ["slope_neg"]),
        n("Sub", ["eol_capacity_ah", "level"], ["gap"]),
        n("Mul", ["lam", "gap"], ["lam_gap"]),
        n("Div", ["lam_gap", "slope_neg"], ["expo"]),
        n("Exp", ["expo"], ["e"]),
        n("Sub", ["e", "one"], ["e1"]),
        n("Div", ["e1", "lam"], ["h_eol"]),
        n("Max", ["h_eol", "zero"], ["eol_cycles_ahead"]),
    ]
    dbl = TensorProto.DOUBLE
    graph = helper.make_graph(
        nodes,
        "soh_damped_trend",
        [
            helper.make_tensor_value_info("features", dbl, ["cells", 2]),
            helper.make_tensor_value_info("horizon_cycles", dbl, ["horizons"]),
            helper.make_tensor_value_info("eol_capacity_ah", dbl, ["cells", 1]),
        ],
        [
            helper.make_tensor_value_info("capacity_ah", dbl, ["cells", "horizons"]),
            helper.make_tensor_value_info("eol_cycles_ahead", dbl, ["cells", 1]),
        ],
        inits,
    )
    from cloud.onnx_export import OPSET

    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model_proto.ir_version = 8
    onnx.checker.check_model(model_proto)
    return model_proto


def export(
    model: DampedTrendSOH, out_dir: Path, name: str, training: dict[str, Any], metrics: dict[str, Any] | None = None
) -> dict:
    from cloud import onnx_export

    meta = {
        "task": "capacity-fade forecast and end-of-life cycle from a capacity history",
        "features": [{"name": k, "unit": u} for k, u in F.FEATURES.items()],
        "inputs": [
            {"name": "features", "dtype": "float64", "shape": ["cells", 2]},
            {"name": "horizon_cycles", "dtype": "float64", "shape": ["horizons"], "unit": "cycles"},
            {"name": "eol_capacity_ah", "dtype": "float64", "shape": ["cells", 1], "unit": "Ah"},
        ],
        "outputs": [
            {"name": "capacity_ah", "unit": "Ah", "shape": ["cells", "horizons"]},
            {
                "name": "eol_cycles_ahead",
                "unit": "cycles",
                "shape": ["cells", 1],
                "note": "cycles from the origin until capacity reaches eol_capacity_ah (0 if already below)",
            },
        ],
        "applies_to": {
            "chemistry": "any (trained on NASA PCoE 18650 Li-ion cells)",
            "capacity": "one discharge capacity per cycle, consecutive cycles",
        },
        "hyperparameters": model.hyperparameters,
        "training_data": training,
        "metrics": {**model.fit_info, **(metrics or {})},
    }
    return onnx_export.finalize(to_onnx(model), "soh", meta, Path(out_dir), name)
