"""Cell and rig models and the emulators that serve a simulated rig over real protocols.

``BasicRig`` is the minimal model behind the agent's ``simulator`` driver; richer models keep its shape
(``cell_ids``, ``step(dt_s)``, ``measure()``).
"""
from simulator.basic import BasicRig, BasicRigSpec

__all__ = ["BasicRig", "BasicRigSpec"]
