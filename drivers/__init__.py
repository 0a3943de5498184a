"""Sources of readings. The contract is in ``drivers.base``; drivers are found by name in ``drivers.registry``."""

from drivers.base import Driver, DriverConfig, DriverContext, DriverError, Event, Flag, ReadingBatch

__all__ = ["Driver", "DriverConfig", "DriverContext", "DriverError", "Event", "Flag", "ReadingBatch"]
