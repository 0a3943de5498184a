"""Cell and rig physics and chemistry data: the leaf of the project (it imports nothing of agent/, drivers/, cloud/).

``Rig``/``RigSpec`` (simulator.rig) is the physics-grade model: electrode-level OCV, 2RC ECM with SOC and
temperature dependence, lumped thermal model, degradation-mode ageing, protocols, faults. ``BasicRig`` keeps the
original small API on top of it. Anything with the seam ``cell_ids``, ``step(dt_s)``, ``measure()`` can back the
``simulator`` driver and the protocol emulators (``drivers/*/emulator.py``). ``simulator.fleet`` generates datasets
for training.

The package itself is light: ``import simulator.chemistry`` (the agent's config does, to check a chemistry name)
loads the chemistry data only. ``from simulator import Rig`` still works; the rig model loads on that first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "BasicRig": "simulator.basic",
    "BasicRigSpec": "simulator.basic",
    "Rig": "simulator.rig",
    "RigSpec": "simulator.rig",
}

__all__ = ["BasicRig", "BasicRigSpec", "Rig", "RigSpec"]


def __getattr__(name: str) -> Any:
    """PEP 562: load the rig model when one of its names is first asked for, not when the package is imported."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
