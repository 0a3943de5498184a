"""ONNX export with metadata: the files the agent runs with onnxruntime.

A model is two files: ``<name>.onnx`` and ``<name>.json`` (metadata: feature names and order with units, inputs
and outputs, model version, training-data hash, hyperparameters, metrics). The version is content-addressed
(family, format version and the first 12 hex digits of the graph's SHA-256), so a retrained model with other
weights gets another version, and a rebuild with the same data and seed gets the same one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cloud.canary import onnx_canary

OPSET = 17
FORMAT_VERSION = 1


def sha256_files(paths: Iterable[Path], root: Path | None = None) -> str:
    """Hash of a training set: file names (relative to root) and contents, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        h.update(str(p.relative_to(root) if root else p.name).encode())
        h.update(b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sklearn_to_onnx(pipeline: Any, n_features: int, log10_output: bool) -> onnx.ModelProto:
    """Convert a fitted scikit-learn regressor (float64 end to end) with skl2onnx.

    With ``log10_output`` the regressor predicts log10(y): a Pow(10, .) node is appended so the graph outputs y
    itself (``cycle_life``) beside ``log10_cycle_life``.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType

    model = convert_sklearn(
        pipeline, initial_types=[("features", DoubleTensorType([None, n_features]))], target_opset=OPSET
    )
    graph = model.graph
    graph.name = "cycle_life_ridge"  # skl2onnx names graphs with a random uuid: keep rebuilds byte-identical
    raw = graph.output[0].name
    if log10_output:
        graph.initializer.append(numpy_helper.from_array(np.array(10.0), "ten"))
        graph.node.append(helper.make_node("Identity", [raw], ["log10_cycle_life"]))
        graph.node.append(helper.make_node("Pow", ["ten", raw], ["cycle_life"]))
        del graph.output[:]
        graph.output.extend(
            [
                helper.make_tensor_value_info("cycle_life", TensorProto.DOUBLE, [None, 1]),
                helper.make_tensor_value_info("log10_cycle_life", TensorProto.DOUBLE, [None, 1]),
            ]
        )
    onnx.checker.check_model(model)
    return model


def finalize(
    model: onnx.ModelProto,
    family: str,
    metadata: dict[str, Any],
    out_dir: Path,
    name: str,
    canary_inputs: dict[str, np.ndarray] | None = None,
) -> dict:
    """Stamp the version, embed a metadata summary in the ONNX file, write ``name.onnx`` and ``name.json``; the
    metadata records a canary (``cloud/canary.py``: ``canary_inputs``, or inputs made from its input spec)."""
    del model.metadata_props[:]
    model.producer_name = "battery-twin"
    model.doc_string = ""
    graph_hash = sha256_bytes(model.SerializeToString(deterministic=True))
    version = f"{family}-v{FORMAT_VERSION}-{graph_hash[:12]}"
    meta = {"name": name, "family": family, "version": version, "format_version": FORMAT_VERSION, **metadata}
    onnx.helper.set_model_props(
        model,
        {
            "battery_twin.version": version,
            "battery_twin.features": json.dumps(meta.get("features", [])),
        },
    )
    model.doc_string = f"battery-twin {family} model {version}"
    data = model.SerializeToString(deterministic=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.onnx").write_bytes(data)
    meta["onnx_sha256"] = sha256_bytes(data)
    meta["model_format"] = "onnx"
    meta["canary"] = onnx_canary(data, meta, canary_inputs)
    (out_dir / f"{name}.json").write_text(json.dumps(_jsonable(meta), indent=2, sort_keys=False) + "\n")
    return meta


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def session(model: onnx.ModelProto | bytes | Path):
    """An onnxruntime session configured as on the edge (one intra-op thread)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    src = (
        model.SerializeToString()
        if isinstance(model, onnx.ModelProto)
        else (str(model) if isinstance(model, Path) else model)
    )
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
