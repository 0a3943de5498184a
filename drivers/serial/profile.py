"""Serial instrument profiles: how to ask (SCPI-style queries) and how to read the answer (regex or CSV).

Two ways an instrument talks: it answers queries (``[[queries]]``, each sent once per channel with ``{channel}``
filled in, e.g. ``MEAS:VOLT? (@{channel})``), or it streams lines by itself (``[stream]``, each line naming its
channel). Either way a line is parsed by a regex with named groups (``voltage_v``, ``current_a``,
``temperature_c``, ``channel``) or by CSV columns with those names. ``reply`` is the format an answer has; the
emulator uses it to answer, and it documents the instrument. A regex is refused at config check if it backtracks
badly (``regexcheck``), and never sees a line over ``REGEX_LINE_LIMIT`` characters.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.base import FIELDS
from drivers.profiles import FIELD_INDEX, load_model_profile, unit_conversion
from drivers.serial.regexcheck import REGEX_LINE_LIMIT, check_backtracking

PROFILE_DIR = Path(__file__).parent / "profiles"
COLUMNS = set(FIELDS) | {"channel", ""}


class LineFormat(BaseModel):
    """How one kind of line is parsed: exactly one of ``regex`` or ``csv``."""

    model_config = ConfigDict(extra="forbid")

    regex: str | None = Field(None, description="named groups: voltage_v, current_a, temperature_c, channel")
    csv: list[str] | None = Field(None, description="column names (a field, 'channel', or '' to skip)")
    separator: str = Field(",", min_length=1, max_length=4)
    scale: dict[str, float] = Field(default_factory=dict, description="per field, e.g. {current_a = -1.0}")
    offset: dict[str, float] = Field(default_factory=dict)
    units: dict[str, str] = Field(default_factory=dict, description="per field unit of the number, e.g. mV")
    reply: str | None = Field(None, description="the answer as a format string, e.g. '{voltage_v:.5f}'")

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            rx = re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        check_backtracking(v)
        unknown = set(rx.groupindex) - COLUMNS
        if unknown:
            raise ValueError(f"unknown group names {sorted(unknown)}; use {sorted(COLUMNS - {''})}")
        if not set(rx.groupindex) & set(FIELDS):
            raise ValueError("the regex captures no field (voltage_v, current_a, temperature_c)")
        return v

    @model_validator(mode="after")
    def _check(self) -> LineFormat:
        if (self.regex is None) == (self.csv is None):
            raise ValueError("set exactly one of regex or csv")
        if self.csv is not None:
            bad = set(self.csv) - COLUMNS
            if bad:
                raise ValueError(f"unknown csv columns {sorted(bad)}; use {sorted(COLUMNS - {''})} or ''")
            if not set(self.csv) & set(FIELDS):
                raise ValueError("the csv columns name no field (voltage_v, current_a, temperature_c)")
        for d in (self.scale, self.offset, self.units):
            bad = set(d) - set(FIELDS)
            if bad:
                raise ValueError(f"scale/offset/units name unknown fields {sorted(bad)}")
        for f, u in self.units.items():
            unit_conversion(u, f)
        return self

    @property
    def fields(self) -> list[str]:
        names = self.csv if self.csv is not None else list(re.compile(self.regex or "").groupindex)
        return [n for n in names if n in FIELDS]

    @property
    def has_channel(self) -> bool:
        return "channel" in (self.csv or []) or "channel" in re.compile(self.regex or "").groupindex


class Query(LineFormat):
    send: str = Field(min_length=1, description="what to send, '{channel}' is replaced, e.g. 'MEAS:VOLT? (@{channel})'")


class SerialProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    terminator: str = Field("\n", min_length=1, max_length=4, description="ends every line the instrument sends")
    send_terminator: str | None = Field(None, description="ends every line sent (default: terminator)")
    encoding: Literal["ascii", "latin-1", "utf-8"] = "ascii"
    max_line_bytes: int = Field(256, ge=8, le=65536, description="longer lines are garbage (resync on next end)")
    init: list[str] = Field(default_factory=list, description="sent once after opening, no answer expected")
    queries: list[Query] = Field(default_factory=list)
    stream: LineFormat | None = None

    @model_validator(mode="after")
    def _mode(self) -> SerialProfile:
        if bool(self.queries) == (self.stream is not None):
            raise ValueError("set either [[queries]] (the instrument answers) or [stream] (it sends by itself)")
        if self.stream is not None and not self.stream.has_channel:
            raise ValueError("a [stream] line must name its channel (a 'channel' group or column)")
        return self


class LineParser:
    """Parses one line into {field index: value}; returns None for anything that is not such a line."""

    def __init__(self, fmt: LineFormat):
        self.fmt = fmt
        self.rx = re.compile(fmt.regex) if fmt.regex is not None else None
        self.conv: dict[str, tuple[float, float]] = {}
        for f in fmt.fields:
            factor, uoff = unit_conversion(fmt.units.get(f, ""), f)
            s, o = fmt.scale.get(f, 1.0), fmt.offset.get(f, 0.0)
            self.conv[f] = (s * factor, o * factor + uoff)

    def parse(self, line: str) -> tuple[int | None, dict[int, float]] | None:
        """(channel or None, {field index: value}), or None if the line does not have the expected shape."""
        if self.rx is not None:
            if len(line) > REGEX_LINE_LIMIT:  # never hand a regex more than the probe at config check tried
                return None
            m = self.rx.fullmatch(line.strip())
            if m is None:
                return None
            parts = m.groupdict()
        else:
            cols = line.strip().split(self.fmt.separator)
            if len(cols) != len(self.fmt.csv or []):
                return None
            parts = dict(zip(self.fmt.csv or [], cols))
        out: dict[int, float] = {}
        try:
            for f, (a, b) in self.conv.items():
                raw = parts.get(f)
                if raw is None:
                    continue
                v = float(raw.strip())
                out[FIELD_INDEX[f]] = v * a + b if math.isfinite(v) else math.nan
            ch = parts.get("channel")
            channel = int(ch.strip()) if ch is not None else None
        except (ValueError, OverflowError, AttributeError):
            return None
        return channel, out


def load_profile(ref: str) -> SerialProfile:
    return load_model_profile(ref, PROFILE_DIR, SerialProfile)
