"""Models for the update tests, built in a temporary folder from the shipped ones (never written to agent/models):
a variant with another version, optionally padded, with a wrong canary, or one that works only on its canary's
shapes (it loads and passes, then fails in the twin). And signed job documents for them, served by the HTTPS
stand-in for S3 (``tests/support/https.py``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from onnx import TensorProto, helper, numpy_helper

from agent.inference.runtime import default_model_path
from agent.inference.soh import SohForecaster, default_soh_path
from cloud.canary import method_canary, onnx_canary
from cloud.publish import placeholder
from cloud.signing import job_document, manifest_for
from tests.support.https import FileServer

NAMES = {"soh": "soh", "cycle-life": "cycle_life"}


def variant(
    out_dir: Path,
    tag: str,
    family: str = "soh",
    pad_bytes: int = 0,
    canary: str = "ok",  # ok | none | wrong
    shape_bug: bool = False,
) -> Path:
    """A model of ``family`` with a version of its own; returns the artifact path (metadata beside it)."""
    if family == "soh":
        return _refs_variant(out_dir, tag, pad_bytes, canary)
    name = NAMES[family]
    src = default_model_path(name)
    model = onnx.load(src)
    model.doc_string = f"battery-twin test variant {tag}"
    if pad_bytes:  # an unused initializer: the file grows, the computation does not change
        pad = numpy_helper.from_array(np.zeros(pad_bytes // 8, dtype=np.float64), f"pad_{tag}")
        model.graph.initializer.append(pad)
    if shape_bug:  # capacity_ah reshaped to the canary's [4 cells, 5 horizons]: fine there, an error for the twin
        for node in model.graph.node:
            node.output[:] = ["capacity_ah_raw" if o == "capacity_ah" else o for o in node.output]
        model.graph.initializer.append(numpy_helper.from_array(np.array([4, 5], dtype=np.int64), "canary_shape"))
        model.graph.node.append(helper.make_node("Reshape", ["capacity_ah_raw", "canary_shape"], ["capacity_ah"]))
        del model.graph.output[0]
        model.graph.output.insert(0, helper.make_tensor_value_info("capacity_ah", TensorProto.DOUBLE, [4, 5]))
    data = model.SerializeToString(deterministic=True)
    meta: dict[str, Any] = json.loads(src.with_suffix(".json").read_text())
    digest = hashlib.sha256(data).hexdigest()
    meta.update(version=f"{family}-v1-test-{tag}-{digest[:8]}", onnx_sha256=digest, model_format="onnx")
    meta.pop("canary", None)
    if canary != "none":
        meta["canary"] = onnx_canary(data, meta)
    if canary == "wrong":
        first = next(iter(meta["canary"]["outputs"]))
        meta["canary"]["outputs"][first] = (np.asarray(meta["canary"]["outputs"][first], dtype=float) * 1.01).tolist()
    path = out_dir / tag / src.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


SOH_CANARY_CELLS = 3


def soh_canary_inputs() -> dict[str, np.ndarray]:
    """Three short fading histories (the twin runs other shapes: ``shape_bug`` tests rely on it)."""
    cycle = np.tile(np.arange(0.0, 200.0, 10.0), (SOH_CANARY_CELLS, 1))
    fade = np.array([[0.0008], [0.0012], [0.0016]])
    return {
        "cycle": cycle,
        "capacity_ah": 2.0 - fade * cycle,
        "nominal_ah": np.full(SOH_CANARY_CELLS, 2.0),
        "horizons": np.arange(1.0, 51.0, 7.0),
        "eol_capacity_ah": np.full(SOH_CANARY_CELLS, 1.6),
    }


def _refs_variant(out_dir: Path, tag: str, pad_bytes: int, canary: str) -> Path:
    """The SOH model is a ``.refs`` file (reference trajectories, JSON), not ONNX: a variant carries a note of its
    own (and padding), and its canary runs ``SohForecaster.forecast`` as the rig will."""
    src = default_soh_path()
    model = json.loads(src.read_bytes())
    model["note"] = f"battery-twin test variant {tag}"
    if pad_bytes:
        model["pad"] = "0" * pad_bytes
    data = json.dumps(model, sort_keys=True).encode()
    digest = hashlib.sha256(data).hexdigest()
    meta: dict[str, Any] = json.loads(src.with_suffix(".json").read_text())
    meta.update(version=f"soh-v2-test-{tag}-{digest[:8]}", model_sha256=digest, model_format="refs")
    meta.pop("canary", None)
    path = out_dir / tag / src.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.with_suffix(".json").write_text(json.dumps(meta))
    if canary != "none":
        meta["canary"] = method_canary(SohForecaster(path), meta, "forecast", soh_canary_inputs())
    if canary == "wrong":
        first = next(iter(meta["canary"]["outputs"]))
        meta["canary"]["outputs"][first] = (np.asarray(meta["canary"]["outputs"][first], dtype=float) * 1.01).tolist()
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def version_of(artifact: Path) -> str:
    return str(json.loads(artifact.with_suffix(".json").read_text())["version"])


def serve_job(
    artifact: Path, key: Ed25519PrivateKey, files: FileServer, bucket: str = "bt-artifacts", region: str = "eu-west-1"
) -> dict[str, Any]:
    """Put both files where the stand-in for S3 serves them and return the signed job document with IoT Jobs'
    presigned-URL placeholders (the stand-in for IoT Jobs fills them in, as the presign role does)."""
    manifest = manifest_for(artifact, artifact.with_suffix(".json"), require_canary=False)  # rigs must refuse it
    base = f"models/{manifest['family']}/{manifest['version']}"
    urls = {}
    for what, path in (("artifact", artifact), ("metadata", artifact.with_suffix(".json"))):
        key_name = f"{base}/{path.name}"
        files.files[f"/{bucket}/{key_name}"] = path.read_bytes()
        urls[what] = placeholder(region, bucket, key_name)
    return job_document(manifest, key, urls["artifact"], urls["metadata"])


def served_path(doc: dict[str, Any], what: str) -> str:
    """The path on the file server of a job document's artifact or metadata."""
    url = doc[f"{what}_url"]
    return "/" + url.split("amazonaws.com/", 1)[1].rstrip("}")
