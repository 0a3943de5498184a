"""Training, evaluation and ONNX export of the twin's models; dataset builders. Needs the ``[train]`` extra.

``cloud/`` imports ``agent.features`` (the one home of feature extraction) and never the other way round.
"""
