"""One cycler file read incrementally: where the next unread line begins, its row number, the test's identity.

Used by the follow driver and by ``battery-twin import`` alike, so a row has the same ledger key and number both
ways. Only complete lines are read (a half-written last line waits for its newline); a file that shrinks or whose
head changes was rewritten or replaced: ``poll`` says so and starts over from its top (the store's ledger drops
the rows it already has, so nothing is ingested twice).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drivers.base import Flag, Origin, ReadingBatch
from drivers.cycler import states
from drivers.cycler.formats import FormatError
from drivers.cycler.states import Note
from drivers.cycler.text import HEAD_BYTES, Header, Hierarchy, IncompleteHead, Parsed

CHUNK_BYTES = 8 << 20  # at most this much text per poll: the batch a driver hands the agent stays bounded


@dataclass
class Progress:
    """What ``poll`` found besides rows: a restart from the top (and why), rows that did not parse."""

    restarted: str = ""  # "" | "rewritten" | "replaced"
    bad_rows: list[int] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # the cycler's step codes against the current (states.py)


class TextSource:
    def __init__(self, path: Path, cell: str, fmt: str = "auto", tz: str = "UTC", start_ms: int | None = None):
        self.path = path
        self.cell = cell
        self.fmt = fmt
        self.tz = tz
        self.start_ms = start_ms
        self.header: Header | None = None
        self.offset = 0  # byte offset of the next unread line
        self.row = 0  # its data row number
        self.hierarchy = Hierarchy()
        self.finished = False  # a text file may always grow: polls end when there is nothing new
        self.tally = states.Tally()  # what the vendor's codes said, reported (states.py)

    @property
    def has_wallclock(self) -> bool:
        return self.header is not None and self.header.fmt.wallclock is not None

    @property
    def identity(self) -> str:
        """The test's identity: a hash of the header and the first data line ("" before they are written)."""
        return self.header.identity if self.header else ""

    @property
    def key(self) -> str:
        """Ledger key: the cell and the test's identity."""
        return f"{self.cell}:{self.identity}"

    def resume(self, identity: str, offset: int, row: int) -> None:
        """Continue after a restart from a checkpoint, if the file still holds that test (else from the top)."""
        self._open_header()
        if self.header is not None and self.header.identity == identity and offset >= self.header.data_offset:
            self.offset, self.row = offset, row

    def _open_header(self) -> bool:
        with self.path.open("rb") as f:
            head = f.read(HEAD_BYTES)
        try:
            self.header = Header.read(head, self.fmt, self.tz, self.start_ms)
        except IncompleteHead:
            return False
        self.offset, self.row, self.hierarchy = self.header.data_offset, 0, Hierarchy()
        return True

    def poll(self, max_bytes: int = CHUNK_BYTES, final: bool = False) -> tuple[Parsed | None, Progress]:
        """The complete lines appended since the last poll (None when there are none). With ``final`` (an import
        of a finished file) a last line without its newline counts too. FormatError if the file is not (or no
        longer) of its format; OSError if it cannot be read."""
        progress = Progress()
        if self.header is None and not self._open_header():
            return None, progress
        assert self.header is not None
        size = os.stat(self.path).st_size
        with self.path.open("rb") as f:
            head = f.read(HEAD_BYTES)
            if size < self.offset or not _same_test(head, self.header, self.fmt, self.tz, self.start_ms):
                before = self.header.identity
                if not self._open_header():
                    self.header = None
                    return None, Progress(restarted="rewritten")
                assert self.header is not None
                progress.restarted = "rewritten" if self.header.identity == before else "replaced"
            f.seek(self.offset)
            data = f.read(max_bytes)
        end = data.rfind(b"\n")
        consumed = end + 1
        if final and len(data) < max_bytes and data and not data.endswith(b"\n"):
            end = consumed = len(data)  # the file's last line, complete though unterminated
        if end < 0:
            return None, progress  # a half line: wait for the rest of it
        text = data[:end].decode("utf-8", errors="replace")
        lines = text.split("\n")
        parsed = self.header.parse(lines, self.row, self.hierarchy)
        self.offset += consumed
        self.row += len(lines)
        progress.bad_rows = parsed.bad
        progress.notes = states.notes_for(self.path.name, parsed, self.header.fmt.phases, self.tally)
        return parsed, progress

    def batch(self, parsed: Parsed, cells: tuple[str, ...], cell_index: int) -> ReadingBatch:
        return to_batch(self.key, parsed, cells, cell_index)


def to_batch(key: str, parsed: Parsed, cells: tuple[str, ...], cell_index: int) -> ReadingBatch:
    """Parsed rows as the contract's batch, with their origin (ledger key, row numbers, cycle and step)."""
    b = ReadingBatch.build(
        cells,
        np.full(len(parsed), cell_index, dtype=np.int32),
        parsed.ts_ms,
        parsed.voltage_v,
        parsed.current_a,
        parsed.temperature_c,
    )
    origin = Origin(key, parsed.row, parsed.cycle_no, parsed.step_no)
    flags = b.flags
    if parsed.fault is not None:  # the cycler itself marked these rows as errors
        flags = flags | np.where(parsed.fault, np.uint32(Flag.SENSOR_FAULT), np.uint32(0))
    return ReadingBatch(b.cells, b.cell, b.ts_ms, b.voltage_v, b.current_a, b.temperature_c, flags, origin)


def _same_test(head: bytes, header: Header, fmt: str, tz: str, start_ms: int | None) -> bool:
    try:
        return Header.read(head, fmt, tz, start_ms).identity == header.identity
    except FormatError:
        return False
