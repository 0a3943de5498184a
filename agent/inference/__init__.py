"""Model inference on the edge: ONNX files run by onnxruntime with one intra-op thread.

A model is ``<name>.onnx`` plus its metadata ``<name>.json`` (written by ``cloud.onnx_export``). Loading checks
that the two belong together (the ONNX file's SHA-256 is in the metadata) and that the features the metadata
names are ones ``agent.features`` knows how to compute, so a model and the edge code cannot silently disagree.
"""

from agent.inference.runtime import CycleLifePredictor, ModelError, OnnxModel, SohForecaster, default_model_path

__all__ = ["CycleLifePredictor", "ModelError", "OnnxModel", "SohForecaster", "default_model_path"]
