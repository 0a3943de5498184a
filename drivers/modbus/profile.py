"""Modbus device profiles: which registers hold which cell's voltage, current, temperature or fault bits.

A profile is a TOML file (see ``profiles/bms16.toml``). Each ``[[registers]]`` entry describes one value or a
run of ``count`` like values (one per cell, ``stride`` registers apart): address, function (holding/input),
type, word and byte order, scale, offset and unit, and the cell and field it feeds. The value a device sends
becomes ``raw * scale + offset`` in ``unit``, then the field's unit (``mV`` -> V, ``K`` -> degC).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.base import FIELDS
from drivers.profiles import load_model_profile, unit_conversion

PROFILE_DIR = Path(__file__).parent / "profiles"

TYPES: dict[str, tuple[str, int]] = {  # name -> (numpy big-endian dtype, registers)
    "u16": (">u2", 1),
    "i16": (">i2", 1),
    "u32": (">u4", 2),
    "i32": (">i4", 2),
    "f32": (">f4", 2),
    "f64": (">f8", 4),
}
FUNCTION_CODES = {"holding": 3, "input": 4}
MAX_READ_REGISTERS = 125  # Modbus limit for function codes 3 and 4


class RegisterEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: int = Field(ge=0, le=65535, description="0-based register address (as on the wire)")
    function: Literal["holding", "input"] | None = Field(None, description="default: the profile's")
    type: Literal["u16", "i16", "u32", "i32", "f32", "f64"] = "u16"
    word_order: Literal["big", "little"] | None = Field(None, description="order of 16-bit words; default: profile")
    byte_order: Literal["big", "little"] | None = Field(None, description="bytes within a word; default: profile")
    scale: float = 1.0
    offset: float = 0.0
    unit: str = Field("", description="unit of raw*scale+offset, e.g. V, mV, A, mA, degC, K ('' = field unit)")
    field: Literal["voltage_v", "current_a", "temperature_c", "fault", "fault_bitmap"]
    cell: int | Literal["all"] = Field(1, description="first cell (1-based), or 'all' for a pack-level value")
    count: int = Field(1, ge=1, le=4096, description="values in a run (fault_bitmap: cells covered by bits)")
    stride: int | None = Field(None, ge=1, le=1000, description="registers between values of a run")
    na: list[float] = Field(default_factory=list, description="raw values meaning 'not available'")
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> RegisterEntry:
        width = TYPES[self.type][1]
        if self.field in FIELDS:
            unit_conversion(self.unit, self.field)
        elif self.unit:
            raise ValueError(f"{self.field} entries carry no unit")
        if self.field == "fault_bitmap":
            if self.count > 16 * width:
                raise ValueError(f"a {self.type} holds {16 * width} fault bits, not {self.count}")
            if self.type.startswith("f"):
                raise ValueError("fault_bitmap needs an integer type")
        if self.cell == "all" and self.count != 1 and self.field != "fault_bitmap":
            raise ValueError("cell = 'all' describes one value: count must be 1")
        if self.stride is not None and self.stride < width:
            raise ValueError(f"stride {self.stride} is shorter than a {self.type} ({width} registers)")
        runs = 1 if self.field == "fault_bitmap" else self.count
        if self.address + (runs - 1) * (self.stride or width) + width > 65536:
            raise ValueError("the run goes past register 65535")
        return self


class ModbusProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    cells: int = Field(ge=1, le=4096, description="cells one device of this kind reports")
    function: Literal["holding", "input"] = "holding"
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    max_registers_per_read: int = Field(MAX_READ_REGISTERS, ge=1, le=MAX_READ_REGISTERS)
    max_gap: int = Field(
        0,
        ge=0,
        le=100,
        description="unmapped registers a single read may span (0: none; "
        "many devices answer a read that touches an unmapped register with an exception)",
    )
    registers: list[RegisterEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _cells_in_range(self) -> ModbusProfile:
        for k, e in enumerate(self.registers):
            if e.cell == "all":
                continue
            last = e.cell + e.count - 1
            if e.cell < 1 or last > self.cells:
                raise ValueError(f"registers[{k}] covers cells {e.cell}..{last}, the profile has 1..{self.cells}")
        return self


def load_profile(ref: str) -> ModbusProfile:
    """A built-in profile by name (``bms16``) or a TOML file; ProfileError/ValueError say what is wrong."""
    return load_model_profile(ref, PROFILE_DIR, ModbusProfile)
