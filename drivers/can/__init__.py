"""The ``can`` driver: a BMS on a CAN bus (any python-can interface), decoded with cantools from a DBC file."""

from drivers.can.driver import CanConfig, CanDriver

__all__ = ["CanConfig", "CanDriver"]
