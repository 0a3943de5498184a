"""The ``cycler`` driver and readers: the files commercial cyclers (Maccor, Neware, PEC, BDF, BioLogic, Arbin) write."""

from drivers.cycler.driver import CyclerConfig, CyclerDriver

__all__ = ["CyclerConfig", "CyclerDriver"]
