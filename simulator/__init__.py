"""Cell and rig models and the emulators that serve a simulated rig over real protocols.

``Rig``/``RigSpec`` (simulator.rig) is the physics-grade model: electrode-level OCV, 2RC ECM with SOC and
temperature dependence, lumped thermal model, degradation-mode ageing, protocols, faults. ``BasicRig`` keeps the
original small API on top of it. Everything with the seam ``cell_ids``, ``step(dt_s)``, ``measure()`` can back
the ``simulator`` driver and the emulators. ``simulator.fleet`` generates datasets for training.
"""

from simulator.basic import BasicRig, BasicRigSpec
from simulator.rig import Rig, RigSpec

__all__ = ["BasicRig", "BasicRigSpec", "Rig", "RigSpec"]
