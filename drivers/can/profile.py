"""CAN profiles: a DBC file plus a mapping from its signals to cell fields.

The DBC says how bits become numbers (cantools decodes them, multiplexing included); the profile says what the
numbers mean for the agent: which signal is which cell's voltage, current, temperature or fault bits. A mapping
names one signal, or a regular expression whose ``cell`` group is the cell position, so one line covers the
multiplexed ``Cell01_Voltage`` .. ``Cell96_Voltage`` of a real BMS.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Literal

import cantools
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drivers.profiles import ProfileError, load_toml, resolve_profile

PROFILE_DIR = Path(__file__).parent / "profiles"


class SignalMap(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signal: str | None = Field(None, description="exact signal name")
    pattern: str | None = Field(None, description="regex on signal names with a named group 'cell' (1-based)")
    message: str | None = Field(None, description="only signals of this message")
    field: Literal["voltage_v", "current_a", "temperature_c", "fault", "fault_bitmap"]
    cell: int | Literal["all"] = Field(1, description="cell of an exact signal, or 'all' (pack-level value)")
    cell_offset: int = Field(0, ge=-4096, le=4096, description="added to the pattern's cell number")
    count: int = Field(1, ge=1, le=64, description="fault_bitmap: cells covered by the bits")
    scale: float = Field(1.0, description="applied after the DBC's own scaling, e.g. -1 to flip a sign convention")
    offset: float = 0.0
    unit: str | None = Field(None, description="unit of the decoded value (default: the DBC signal's unit)")
    stale_after_ms: float | None = Field(None, gt=0, description="default: stale_cycles x the message cycle time")

    @field_validator("pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                rx = re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
            if "cell" not in rx.groupindex:
                raise ValueError("the pattern needs a named group 'cell', e.g. '^Cell(?P<cell>\\d+)_Voltage$'")
        return v

    @model_validator(mode="after")
    def _one_selector(self) -> SignalMap:
        if (self.signal is None) == (self.pattern is None):
            raise ValueError("set exactly one of signal = 'Name' or pattern = 'regex'")
        return self


class CanProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    dbc: str = Field(description="DBC file, relative to the profile file")
    cells: int = Field(ge=1, le=4096)
    stale_cycles: float = Field(3.0, ge=1, le=1000, description="a value older than this many cycle times is stale")
    default_stale_after_ms: float = Field(1000.0, gt=0, description="for messages without GenMsgCycleTime")
    signals: list[SignalMap] = Field(min_length=1)


class LoadedProfile:
    """A profile with its DBC loaded (``db`` is a ``cantools.database.can.Database``)."""

    def __init__(self, profile: CanProfile, db: Any, path: Path, dbc_path: Path):
        self.profile = profile
        self.db = db
        self.path = path
        self.dbc_path = dbc_path


@functools.lru_cache(maxsize=32)
def _load(path: str, mtime_ns: int, dbc_override: str | None) -> LoadedProfile:
    p = Path(path)
    try:
        prof = CanProfile.model_validate(load_toml(p))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        raise ProfileError(f"{p}: {problems}") from None
    dbc = Path(dbc_override) if dbc_override else (p.parent / prof.dbc)
    try:
        db = cantools.database.load_file(str(dbc), database_format="dbc")
    except FileNotFoundError:
        raise ProfileError(f"{p}: DBC file {str(dbc)!r} not found") from None
    except Exception as exc:  # noqa: BLE001 - cantools raises several parse error types
        raise ProfileError(f"{dbc}: not a usable DBC file: {exc}") from None
    return LoadedProfile(prof, db, p, dbc)


def load_profile(ref: str, dbc: str | None = None) -> LoadedProfile:
    p = resolve_profile(ref, PROFILE_DIR)
    return _load(str(p.resolve()), p.stat().st_mtime_ns, dbc)
