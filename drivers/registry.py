"""Drivers by name, imported lazily (python-can's ``BACKENDS`` map is the model).

Built-in drivers are listed here; third-party packages can add theirs through the ``battery_twin.drivers``
entry-point group without touching this file.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from drivers.base import Driver

BUILTIN: dict[str, str] = {
    "simulator": "drivers.simulator:SimulatorDriver",
    "modbus": "drivers.modbus:ModbusDriver",
    "can": "drivers.can:CanDriver",
    "serial": "drivers.serial:SerialDriver",
    "cycler": "drivers.cycler:CyclerDriver",
}


def available() -> list[str]:
    names = set(BUILTIN)
    names.update(ep.name for ep in entry_points(group="battery_twin.drivers"))
    return sorted(names)


def get_driver_class(type_name: str) -> type[Driver]:
    """Return the driver class for ``type_name``; KeyError names the known drivers."""
    target = BUILTIN.get(type_name)
    if target is None:
        for ep in entry_points(group="battery_twin.drivers"):
            if ep.name == type_name:
                target = ep.value
                break
    if target is None:
        raise KeyError(f"unknown driver type {type_name!r}; known: {', '.join(available())}")
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise TypeError(f"{target} is not a Driver subclass")
    return cls
