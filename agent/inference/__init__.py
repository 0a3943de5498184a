"""Model inference on the edge.

Cycle life is an ONNX file run by onnxruntime with one intra-op thread: ``<name>.onnx`` plus its metadata
``<name>.json`` (written by ``cloud.onnx_export``). The SOH forecaster needs its reference trajectories, so its model
is ``<name>.refs`` (JSON) plus the same kind of metadata (``agent.inference.soh``). Loading checks that model and
metadata belong together (the model file's SHA-256 is in the metadata), so a model and the edge code cannot silently
disagree.
"""

from agent.inference.runtime import CycleLifePredictor, ModelError, OnnxModel, default_model_path
from agent.inference.soh import SohForecast, SohForecaster, SohModelError, default_soh_path

__all__ = [
    "CycleLifePredictor",
    "ModelError",
    "OnnxModel",
    "SohForecast",
    "SohForecaster",
    "SohModelError",
    "default_model_path",
    "default_soh_path",
]
