"""The digital twin on the agent: SOC by EKF, cycles and per-cycle summaries, predictions, anomalies.

``TwinProcessor`` plugs into the pipeline as a ``Processor``: it sees every validated batch before it is stored,
returns alarm events (stored in the same transaction) and completed-cycle summaries (stored and published on
``dt/battery-twin/{rig}/cycles``). State is arrays indexed by cell; nothing per sample is a Python object.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import AgentConfig

if TYPE_CHECKING:
    from agent.twin.processor import TwinProcessor


def build_twin(cfg: AgentConfig) -> TwinProcessor:
    """The twin processor for an agent config (imports onnxruntime, so only when the twin is enabled)."""
    from agent.twin.processor import TwinProcessor

    return TwinProcessor(cfg.twin, cfg.drivers, Path(cfg.store.path))
