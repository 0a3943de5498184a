"""The ``modbus`` driver: BMS and meters over Modbus TCP or RTU, described by register-map profiles."""

from drivers.modbus.config import ModbusConfig, ModbusDevice
from drivers.modbus.driver import ModbusDriver

__all__ = ["ModbusConfig", "ModbusDevice", "ModbusDriver"]
