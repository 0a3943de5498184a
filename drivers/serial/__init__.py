"""The ``serial`` driver: line-based instruments (SCPI cyclers, electronic loads, loggers) over pyserial."""

from drivers.serial.driver import SerialConfig, SerialDriver

__all__ = ["SerialConfig", "SerialDriver"]
