"""onnxruntime sessions for the twin's ONNX models (cycle life), with their metadata checks."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from agent.features import cyclelife as cl_features
from agent.features.qdv import VoltageGrid

MODELS_PACKAGE = "agent.models"


class ModelError(Exception):
    """A model file that cannot be used: missing, not matching its metadata, or asking for unknown features."""


def default_model_path(name: str) -> Path:
    """Path of a model shipped with the agent (``agent/models/<name>.onnx``)."""
    return Path(str(resources.files(MODELS_PACKAGE).joinpath(f"{name}.onnx")))


def read_checked(
    path: Path, meta_path: Path, hash_key: str, error: type[ModelError] = ModelError
) -> tuple[bytes, dict[str, Any]]:
    """A model file and its JSON metadata, refused (``error``) unless the metadata's ``hash_key`` is the file's
    sha256: a model is only ever used with the metadata it was built with (ONNX graphs and SOH ``.refs`` alike)."""
    try:
        data = path.read_bytes()
        meta: dict[str, Any] = json.loads(meta_path.read_text())
    except OSError as exc:
        raise error(f"cannot read model {path} / {meta_path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"model metadata {meta_path} is not valid JSON: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if meta.get(hash_key) != digest:
        raise error(
            f"{path.name} does not match its metadata {meta_path.name} (sha256 {digest[:12]} "
            f"!= {str(meta.get(hash_key))[:12]}): rebuild or copy both files together"
        )
    return data, meta


class OnnxModel:
    """An ONNX model checked against its metadata at load; the onnxruntime session is made on the first ``run``.

    Why lazy: onnxruntime and one session cost ~35 MB of RSS (docs/design-notes.md), and the cycle-life model runs
    once per cell, at cycle 100; a gateway whose cells are younger (or have passed it) need not carry them. The
    hash check keeps a graph from being swapped under its metadata; an update's canary (agent/remote/canary.py)
    runs the graph before it goes live, so a graph that does not build is still refused before use."""

    def __init__(self, onnx_path: str | Path, meta_path: str | Path | None = None):
        self.path = Path(onnx_path)
        meta_path = Path(meta_path) if meta_path else self.path.with_suffix(".json")
        data, self.meta = read_checked(self.path, meta_path, "onnx_sha256")
        self._data: bytes | None = data
        self._session: Any = None

    @property
    def session(self) -> Any:
        """The onnxruntime session (imports onnxruntime and builds the session on first use)."""
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            self._session = ort.InferenceSession(self._data, opts, providers=["CPUExecutionProvider"])
            self._data = None
        return self._session

    @property
    def output_names(self) -> list[str]:
        """The graph's outputs: from the metadata while the session is not built, else from the session."""
        if self._session is None and isinstance(self.meta.get("outputs"), list):
            return [str(o["name"]) for o in self.meta["outputs"]]
        return [o.name for o in self.session.get_outputs()]

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "unknown"))

    @property
    def family(self) -> str:
        return str(self.meta.get("family", ""))

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f["name"] for f in self.meta.get("features", []))

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.session
        out = session.run(None, {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in inputs.items()})
        return dict(zip((o.name for o in session.get_outputs()), out))


class CycleLifePredictor:
    """Early cycle-life prediction, with its interval, from Qd(V) curves (``agent.features.cyclelife``)."""

    def __init__(self, path: str | Path | None = None):
        self.model = OnnxModel(path or default_model_path("cycle_life"))
        if self.model.family != "cycle-life":
            raise ModelError(f"{self.model.path.name} is a {self.model.family!r} model, not cycle-life")
        try:
            self.refs = tuple(self._ref(f) for f in self.model.meta.get("features", []))
        except (KeyError, ValueError) as exc:
            raise ModelError(f"{self.model.path.name} needs features this agent cannot compute: {exc}") from None
        self.grid = VoltageGrid(**self.model.meta["applies_to"]["voltage_grid"])
        self.chemistry = self.model.meta["applies_to"].get("chemistry")
        # the training cells' capacity (None: a model without it is taken for any size) and how far a cell may be off
        self.capacity_ah = self.model.meta["applies_to"].get("capacity_ah")
        self.capacity_tolerance = float(self.model.meta["applies_to"].get("capacity_tolerance", 0.25))
        self.ranges = self.model.meta.get("feature_ranges", {})
        self.quantiles = tuple(self.model.meta.get("interval", {}).get("quantiles", ()))
        self.has_interval = {"cycle_life_lower", "cycle_life_upper"} <= set(self.model.output_names)

    def _ref(self, f: dict[str, Any]) -> cl_features.FeatureRef:
        if "key" in f:
            return cl_features.FeatureRef.parse(f["key"])
        # Models of the first format name one window for all their dQ features.
        fs = self.model.meta["feature_spec"]
        spec = cl_features.CycleLifeSpec(int(fs["early_cycle"]), int(fs["half_width"]))
        return cl_features.refs_for([f["name"]], spec)[0]

    @property
    def version(self) -> str:
        return self.model.version

    def off_reason(self, chemistry: str, nominal_ah: np.ndarray) -> str | None:
        """Why this model does not apply to a group of cells (None when it does). Its capacity features are in Ah of
        the cells it was trained on, so cells of another size would be read as another fade (2.3 Ah LFP cells
        scored ~90,000 cycles, flagged only as extrapolating)."""
        if chemistry != self.chemistry:
            return f"chemistry {chemistry}, the model knows {self.chemistry}"
        if self.capacity_ah is not None:
            nominal = np.asarray(nominal_ah, dtype=float)
            off = np.abs(nominal / float(self.capacity_ah) - 1.0) > self.capacity_tolerance
            if off.any():
                return (
                    f"capacity {float(nominal[off][0]):.3g} Ah, the model knows {float(self.capacity_ah):.3g} Ah cells"
                )
        return None

    @property
    def curve_cycles(self) -> set[int]:
        """Cycles whose Qd(V) curves the model's features need."""
        return cl_features.curve_cycles(self.refs)

    def features_qdlin(self, qdlin: np.ndarray) -> np.ndarray:
        """Features [cells, inputs] from full Qdlin matrices [cells, grid, cycles 2..100]."""
        return cl_features.qdlin_features(qdlin, self.refs)

    def features_from_curves(self, curves: dict[int, np.ndarray], capacity_ah: np.ndarray) -> np.ndarray | None:
        """One cell's features [1, inputs] from its curves (cycle -> Qd(V)); None when a window has no curve."""
        return cl_features.curves_features(curves, capacity_ah, self.refs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Cycle life (cycles) per row of the feature matrix."""
        return self.model.run({"features": np.atleast_2d(x)})["cycle_life"][:, 0]

    def predict_interval(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(cycle life, lower, upper) per row; the bounds are the quantiles in ``self.quantiles`` (None if the
        model has no interval)."""
        out = self.model.run({"features": np.atleast_2d(x)})
        if not self.has_interval:
            return out["cycle_life"][:, 0], None, None
        return out["cycle_life"][:, 0], out["cycle_life_lower"][:, 0], out["cycle_life_upper"][:, 0]

    def extrapolating(self, x: np.ndarray) -> np.ndarray:
        """True per row where a feature lies outside the training range (the prediction is an extrapolation)."""
        x = np.atleast_2d(x)
        out = np.zeros(x.shape[0], dtype=bool)
        for i, r in enumerate(self.refs):
            lo, hi = self.ranges.get(r.key, self.ranges.get(r.name, (-np.inf, np.inf)))
            out |= ~((x[:, i] >= lo) & (x[:, i] <= hi))
        return out
