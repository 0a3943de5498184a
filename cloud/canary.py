"""Canary inputs and outputs, recorded in a model's metadata when it is exported.

A rig runs the canary inputs through an updated model before it goes live and compares the outputs recorded here
(``agent/remote/canary.py``): a model file that loads but computes something else (a wrong onnxruntime, a graph
that was tampered with before signing, a converter bug) is refused there. ``onnx_export.finalize`` calls
``onnx_canary`` for every ONNX model; another format records its canary with ``record`` and the method to call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

RTOL, ATOL = 1e-6, 1e-9
ROWS = 4  # cells in a canary batch
SIZES = {"horizons": 5, "H": 5, "T": 12}  # other symbolic dimensions get 3


def _dims(shape: list[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else ROWS if d == "cells" else SIZES.get(str(d), 3) for d in shape)


def synthetic_inputs(meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Deterministic inputs from the metadata's ``inputs`` spec: features spread over their training ranges where
    the metadata has them (``feature_ranges``), otherwise evenly between 0.5 and 1.5; a horizon counts up."""
    ranges = meta.get("feature_ranges") or {}
    names = [f["name"] for f in meta.get("features", [])]
    out: dict[str, np.ndarray] = {}
    for spec in meta.get("inputs", []):
        shape = _dims(spec.get("shape", ["cells", 1]))
        n = int(np.prod(shape))
        if spec["name"] == "features" and names and all(k in ranges for k in names) and shape[-1] == len(names):
            lo = np.array([ranges[k][0] for k in names])
            hi = np.array([ranges[k][1] for k in names])
            frac = np.linspace(0.2, 0.8, shape[0])[:, None]
            out["features"] = lo + frac * (hi - lo)
        elif "horizon" in spec["name"]:
            out[spec["name"]] = (np.arange(n, dtype=float) + 1.0).reshape(shape) * 10.0
        else:
            out[spec["name"]] = np.linspace(0.5, 1.5, n).reshape(shape)
    return out


def record(
    run: Callable[..., Any], inputs: dict[str, np.ndarray], output_names: list[str], call: str | None = None
) -> dict[str, Any]:
    """The canary of a model: ``run(**inputs)`` (a dict, a dataclass or a tuple of arrays in ``output_names``
    order) and what it gave. ``call``: the method a rig calls on the loaded model (None: an ONNX session)."""
    import dataclasses

    result = run(**inputs)
    if isinstance(result, dict):
        outputs = dict(result)
    elif dataclasses.is_dataclass(result) and not isinstance(result, type):
        outputs = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    else:
        outputs = dict(zip(output_names, result if isinstance(result, (tuple, list)) else [result]))
    canary: dict[str, Any] = {
        "inputs": {k: np.asarray(v, dtype=float).tolist() for k, v in inputs.items()},
        "outputs": {k: _rounded(v) for k, v in outputs.items()},
        "rtol": RTOL,
        "atol": ATOL,
    }
    if call is not None:
        canary["call"] = call
    return canary


def _rounded(v: Any) -> Any:
    """12 significant digits: far inside the tolerance, and the same text whatever CPU computed it."""
    a = np.asarray(v, dtype=float)
    out = np.vectorize(lambda x: float(f"{x:.12g}") if np.isfinite(x) else None, otypes=[object])(a)
    return out.tolist()


def onnx_canary(model_bytes: bytes, meta: dict[str, Any], inputs: dict[str, np.ndarray] | None = None) -> dict:
    """The canary of an ONNX model, run in onnxruntime as on the edge (one intra-op thread)."""
    from cloud.onnx_export import session

    sess = session(model_bytes)
    names = [o.name for o in sess.get_outputs()]
    feed = inputs if inputs is not None else synthetic_inputs(meta)

    def run(**kw: np.ndarray) -> list[np.ndarray]:
        return list(sess.run(None, {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in kw.items()}))

    return record(run, feed, names)


def method_canary(model: Any, meta: dict[str, Any], call: str, inputs: dict[str, np.ndarray] | None = None) -> dict:
    """The canary of a model in another format, run through its loader's ``call`` method (e.g. ``forecast``)."""
    return record(getattr(model, call), inputs if inputs is not None else synthetic_inputs(meta), [], call=call)
