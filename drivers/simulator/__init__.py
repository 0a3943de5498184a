"""The ``simulator`` driver: a simulated rig in-process, paced to the wall clock (or unpaced for benchmarks)."""

from drivers.simulator.driver import SimulatorConfig, SimulatorDriver

__all__ = ["SimulatorConfig", "SimulatorDriver"]
