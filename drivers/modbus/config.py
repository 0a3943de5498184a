"""Configuration of the ``modbus`` driver: devices, each with a profile and a transport (TCP or RTU)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from drivers.base import DriverConfig
from drivers.modbus.profile import ModbusProfile, load_profile
from drivers.profiles import cell_ids


class ModbusDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="device name in events and health")
    profile: str = Field(description="built-in profile name (e.g. 'bms16') or path to a profile TOML file")
    tcp: str | None = Field(None, description="host:port of a Modbus TCP device or gateway")
    rtu: str | None = Field(None, description="serial port of an RS-485 line, e.g. /dev/ttyUSB0 (Modbus RTU)")
    device_id: int = Field(1, ge=0, le=255, description="Modbus unit / slave id")
    baudrate: int = Field(19200, ge=300, le=4_000_000, description="RTU only; devices on one port must agree")
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    cells: list[str] | None = Field(None, description="cell ids in profile order (default: cell_prefix + 01..)")
    cell_prefix: str | None = Field(None, description="default: '<name>-c'")
    poll_interval_s: float | None = Field(None, gt=0, le=3600, description="default: the driver's")
    timeout_s: float | None = Field(
        None, gt=0, le=60, description="default: the driver's (RTU: the longest of the devices on the port)"
    )
    retries: int | None = Field(None, ge=0, le=5, description="default: the driver's")

    _profile: ModbusProfile = PrivateAttr()
    _cell_ids: tuple[str, ...] = PrivateAttr()
    _host: str = PrivateAttr("")
    _port: int = PrivateAttr(0)

    @model_validator(mode="after")
    def _resolve(self) -> ModbusDevice:
        if (self.tcp is None) == (self.rtu is None):
            raise ValueError(f"device {self.name}: set exactly one of tcp = 'host:port' or rtu = '/dev/tty...'")
        if self.tcp is not None:
            host, _, port = self.tcp.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"device {self.name}: tcp must be 'host:port', got {self.tcp!r}")
            self._host, self._port = host.strip("[]"), int(port)
        self._profile = load_profile(self.profile)
        prefix = self.cell_prefix if self.cell_prefix is not None else f"{self.name}-c"
        self._cell_ids = cell_ids(self._profile.cells, self.cells, prefix)
        return self

    @property
    def line(self) -> str:
        """Transport key: devices with the same key share one connection (an RS-485 line)."""
        return f"rtu:{self.rtu}" if self.rtu else f"tcp:{self._host}:{self._port}:{self.device_id}"


class ModbusConfig(DriverConfig):
    type: Literal["modbus"] = "modbus"
    devices: list[ModbusDevice] = Field(min_length=1)
    poll_interval_s: float = Field(1.0, gt=0, le=3600, description="time between polls of a healthy device")
    timeout_s: float = Field(0.5, gt=0, le=60, description="wait this long for an answer to one request")
    retries: int = Field(1, ge=0, le=5, description="extra attempts per request while a device is healthy")
    backoff_max_s: float = Field(30.0, gt=0, le=3600, description="longest gap between probes of a failing device")
    down_after_s: float = Field(5.0, gt=0, le=86400, description="silent this long: device reported down")
    stale_after_polls: float = Field(
        2.5, ge=1, le=100, description="a value older than this many poll intervals is flagged STALE"
    )
    max_pending_batches: int = Field(1000, ge=1, le=100_000, description="polls waiting for the agent, at most")

    @model_validator(mode="after")
    def _check_devices(self) -> ModbusConfig:
        names = [d.name for d in self.devices]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"device names must be unique: {sorted(dup)}")
        seen: dict[str, str] = {}
        for d in self.devices:
            for c in d._cell_ids:
                if c in seen:
                    raise ValueError(f"cell id {c!r} is used by devices {seen[c]!r} and {d.name!r}")
                seen[c] = d.name
        ports: dict[str, tuple[int, str, int]] = {}
        for d in self.devices:
            if d.rtu:
                settings = (d.baudrate, d.parity, d.stopbits)
                if ports.setdefault(d.rtu, settings) != settings:
                    raise ValueError(f"devices on {d.rtu} disagree on baudrate/parity/stopbits")
        ids = [(d.line, d.device_id) for d in self.devices if d.rtu]
        if len(ids) != len(set(ids)):
            raise ValueError("two devices on one RTU line have the same device_id")
        return self
