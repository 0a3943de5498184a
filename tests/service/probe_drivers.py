"""Driver classes whose *config shapes* match real field drivers (serial port path, CAN channel, Modbus TCP host),
so doctor's generic probes can be tested against real peers (a socat pty, a listening socket, python-can's virtual
bus) while the real drivers are built elsewhere. They never read: doctor does not open drivers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from drivers.base import Check, Driver, DriverConfig, ReadingBatch


class _NoRead(Driver):
    @property
    def cells(self) -> tuple[str, ...]:
        return ()

    async def open(self) -> None:
        raise NotImplementedError

    async def read(self) -> ReadingBatch:
        raise NotImplementedError


class SerialLikeConfig(DriverConfig):
    type: Literal["serial-like"] = "serial-like"
    port: str
    baudrate: int = 115200


class SerialLike(_NoRead):
    config_model = SerialLikeConfig


class CanLikeConfig(DriverConfig):
    type: Literal["can-like"] = "can-like"
    interface: str = "socketcan"
    channel: str = "can0"


class CanLike(_NoRead):
    config_model = CanLikeConfig


class TcpLikeConfig(DriverConfig):
    type: Literal["tcp-like"] = "tcp-like"
    host: str
    port: int = 502


class TcpLike(_NoRead):
    config_model = TcpLikeConfig


class BusDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tcp: str | None = None
    rtu: str | None = None


class ModbusLikeConfig(DriverConfig):
    """The shape of a Modbus driver: several devices, each over TCP ("host:port") or RTU (a serial line)."""

    type: Literal["modbus-like"] = "modbus-like"
    devices: list[BusDevice]


class ModbusLike(_NoRead):
    config_model = ModbusLikeConfig


class HookedConfig(DriverConfig):
    type: Literal["hooked"] = "hooked"
    port: str = "/dev/this-is-not-probed-generically"
    behaviour: Literal["ok", "raise", "hang"] = "ok"


class Hooked(_NoRead):
    """A driver with its own doctor() hook: doctor uses it instead of the generic probes."""

    config_model = HookedConfig

    @classmethod
    def doctor(cls, config: DriverConfig) -> list[Check] | None:
        behaviour = getattr(config, "behaviour", "ok")
        if behaviour == "raise":
            raise RuntimeError("hook exploded")
        if behaviour == "hang":
            import time

            time.sleep(30)
        return [Check(f"driver.{config.name}.bus", "ok", "the driver's own check ran")]


REGISTRY = {
    "serial-like": "tests.service.probe_drivers:SerialLike",
    "can-like": "tests.service.probe_drivers:CanLike",
    "tcp-like": "tests.service.probe_drivers:TcpLike",
    "hooked": "tests.service.probe_drivers:Hooked",
    "modbus-like": "tests.service.probe_drivers:ModbusLike",
}
