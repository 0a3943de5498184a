"""What each cycler's text export looks like: one ``TextFormat`` per vendor layout, and detection from the header.

A format names the header line, the delimiter, and which column carries each contract field with its unit and
sign. Vendors differ: Maccor writes unsigned amps with a state letter (C/D/R), Neware and PEC sign the current
(discharge negative), the BDF file here writes discharge positive; PEC writes mV and mA; times are elapsed
``d hh:mm:ss`` (Maccor), ``h:mm:ss`` (Neware), seconds (PEC) or hours (BDF), with one local wall-clock column
whose zone comes from the config.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

TimeUnit = Literal["s", "h", "hms", "dhms"]


class FormatError(ValueError):
    """The file is not (or no longer) the format it was opened as: a changed header, no header at all."""


@dataclass(frozen=True)
class TextFormat:
    name: str
    header_prefix: str  # the column-header line starts with this (detection and where data begins)
    delimiter: str
    elapsed: tuple[str, TimeUnit]  # elapsed test time column and its unit
    voltage: tuple[str, float]  # column, scale to volts
    current: tuple[str, float]  # column, scale to amperes with charge positive (sign included)
    wallclock: str | None = None  # local date-time column: the first row anchors elapsed time to UTC
    wallclock_formats: tuple[str, ...] = ()
    temperature: str | None = None
    cycle: str | None = None
    step: str | None = None
    step_type: str | None = None  # text naming the step (charge/discharge/rest)
    state: str | None = None  # Maccor: C/D/R/... ; current is unsigned and takes its sign from here
    discharge_ah: tuple[str, float] | None = None  # the cycler's own discharge capacity (golden checks)
    required: tuple[str, ...] = field(default=())  # columns that must be present (besides the above)
    hierarchical: bool = False  # Neware's "regular" export: cycle, step and record rows interleaved
    phases: dict[str, str] = field(default_factory=dict)  # state/step-type code -> charge|discharge|rest|other

    @property
    def phase_column(self) -> str | None:
        """The column whose codes ``phases`` maps (Maccor's state, else the step type)."""
        return (self.state or self.step_type) if self.phases else None

    def columns(self) -> list[str]:
        cols = [self.elapsed[0], self.voltage[0], self.current[0]]
        for extra in (self.wallclock, self.temperature, self.cycle, self.step, self.step_type, self.state):
            if extra:
                cols.append(extra)
        if self.discharge_ah:
            cols.append(self.discharge_ah[0])
        return cols + list(self.required)


_CLOCKS = {
    "us": ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M"),
    "iso": ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S"),
}


def _load() -> dict[str, TextFormat]:
    """The layouts in formats.toml (data, not code: a new vendor layout is a table there)."""
    out = {}
    for name, t in tomllib.loads((Path(__file__).parent / "formats.toml").read_text(encoding="utf-8")).items():
        pairs: dict[str, Any] = {
            k: (t[k][0], t[k][1]) for k in ("elapsed", "voltage", "current", "discharge_ah") if k in t
        }
        clocks = _CLOCKS[t["wallclock_formats"]] if "wallclock_formats" in t else ()
        plain: dict[str, Any] = {k: v for k, v in t.items() if k not in pairs and k != "wallclock_formats"}
        out[name] = TextFormat(name=name, wallclock_formats=clocks, **pairs, **plain)
    return out


FORMATS: dict[str, TextFormat] = _load()
"""Text formats by name. ``bdf`` with ``Unix Time / s`` uses it instead of a configured start (see text.py)."""

MAX_HEADER_LINES = 200  # a header longer than this is not one of ours


def detect(head_lines: list[str]) -> tuple[TextFormat, int]:
    """The format whose header line appears in the first lines, and that line's index. FormatError if none."""
    for idx, line in enumerate(head_lines[:MAX_HEADER_LINES]):
        for fmt in FORMATS.values():
            if line.startswith(fmt.header_prefix) or (
                fmt.name == "bdf" and line.startswith(("Test Time / h,", "Unix Time / s,"))
            ):
                return fmt, idx
    raise FormatError("no known cycler header (Maccor, Neware, PEC, BDF) in the first lines of the file")


def find_header(head_lines: list[str], fmt: TextFormat) -> int:
    """Index of ``fmt``'s header line; FormatError when the file does not have it (a changed header)."""
    try:
        found, idx = detect(head_lines)
    except FormatError:
        raise FormatError(f"no {fmt.name} header line ({fmt.header_prefix.strip()!r}...) in the file") from None
    if found.name != fmt.name:
        raise FormatError(f"the file has a {found.name} header, not {fmt.name}")
    return idx
