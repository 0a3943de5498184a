"""Before a new model goes live: load it as the twin will, and run the canary its metadata carries.

A canary (written by ``cloud/canary.py`` when the model is exported) is inputs and the outputs the model gave for
them in the cloud: ``{"inputs": {name: array}, "outputs": {name: array}, "rtol", "atol", "call"}``. An ONNX model
runs in a session of its own (onnxruntime, separate from the twin's); another format runs through its family's
loader, calling the method ``call`` names with the inputs as keyword arguments. Outputs must match within the
tolerances (NaN matches NaN). Shipped models need no canary (built and hash-checked at install); an update must have
one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agent.remote.signing import VerifyError

Loader = Callable[[Path], Any]


def family_loaders() -> dict[str, Loader]:
    """How the twin loads each family (checks metadata, features and the file's hash)."""
    from agent.inference import CycleLifePredictor, SohForecaster

    return {"cycle-life": CycleLifePredictor, "soh": SohForecaster}


def _as_arrays(result: Any, names: list[str]) -> dict[str, np.ndarray]:
    items: list[tuple[Any, Any]]
    if isinstance(result, dict):
        items = list(result.items())
    elif dataclasses.is_dataclass(result) and not isinstance(result, type):
        items = [(f.name, getattr(result, f.name)) for f in dataclasses.fields(result)]
    elif isinstance(result, (tuple, list)):
        items = list(zip(names, result))
    else:
        items = list(zip(names[:1], [result]))
    return {str(k): np.asarray(v, dtype=float) for k, v in items}


def run_model(path: Path, fmt: str, canary: dict[str, Any], loader: Loader) -> dict[str, np.ndarray]:
    inputs = {k: np.asarray(v, dtype=float) for k, v in canary["inputs"].items()}
    names = list(canary["outputs"])
    if fmt == "onnx" and "call" not in canary:
        from agent.inference import OnnxModel

        return _as_arrays(OnnxModel(path).run(inputs), names)
    model = loader(path)
    method = getattr(model, str(canary.get("call", "")), None)
    if method is None:
        raise VerifyError("canary_failed", f"the canary calls {canary.get('call')!r}, which this model does not have")
    return _as_arrays(method(**inputs), names)


def check(path: Path, meta: dict[str, Any], family: str, fmt: str) -> None:
    """Raise VerifyError (``load_failed``, ``no_canary``, ``canary_failed``, ``canary_mismatch``) unless the model
    at ``path`` (format ``fmt``) loads as the twin will and reproduces its canary outputs."""
    loader = family_loaders().get(family)
    if loader is None:
        raise VerifyError("unknown_family", f"this agent has no model family {family!r}")
    try:
        loader(path)
    except Exception as exc:  # noqa: BLE001 - any failure to load is a refusal, not a crash
        raise VerifyError("load_failed", f"the {family} model does not load: {exc}"[:900]) from None
    canary = meta.get("canary")
    if not isinstance(canary, dict) or not canary.get("inputs") or not canary.get("outputs"):
        raise VerifyError("no_canary", "the metadata has no canary inputs and outputs (an update needs them)")
    try:
        got = run_model(path, fmt, canary, loader)
    except VerifyError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise VerifyError("canary_failed", f"running the canary failed: {exc!r}"[:900]) from None
    rtol, atol = float(canary.get("rtol", 1e-6)), float(canary.get("atol", 1e-9))
    for name, want in canary["outputs"].items():
        expected = np.asarray(want, dtype=float)
        have = got.get(name)
        if have is None or have.shape != expected.shape:
            shape = None if have is None else have.shape
            raise VerifyError("canary_mismatch", f"output {name}: shape {shape}, the canary says {expected.shape}")
        if not np.allclose(have, expected, rtol=rtol, atol=atol, equal_nan=True):
            worst = float(np.nanmax(np.abs(have - expected)))
            raise VerifyError("canary_mismatch", f"output {name} differs from the canary by up to {worst:.3g}")
