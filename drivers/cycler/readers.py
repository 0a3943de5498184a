"""Which reader a file gets: text exports (``source.TextSource``) or native files (``NativeSource`` below)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

from drivers.base import ReadingBatch
from drivers.cycler import states
from drivers.cycler.formats import FORMATS
from drivers.cycler.native import NATIVE, NATIVE_PHASES, identity, read_native
from drivers.cycler.source import Progress, TextSource, to_batch
from drivers.cycler.text import Parsed

NATIVE_FORMATS = ("biologic", "neware_nda", "arbin")
FORMAT_CHOICES = ("auto", *FORMATS, *NATIVE_FORMATS)


class NativeSource:
    """A native file, read whole when it has changed since the last read (size or mtime); rows already handed
    out (by row number) are not handed out again."""

    def __init__(
        self,
        path: Path,
        cell: str,
        fmt: str,
        tz: str = "UTC",
        min_reread_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.path, self.cell, self.fmt, self.tz = path, cell, fmt, tz
        self.min_reread_s, self.clock = min_reread_s, clock  # a whole-file read at most this often (follow mode)
        self.reads = 0  # whole-file reads so far
        self._read_at = -math.inf
        self.identity = ""
        self.row = 0  # rows handed out so far
        self.offset = 0  # a native file is read whole: no byte offset
        self.finished = False
        self._seen: tuple[int, int] | None = None
        self.tally = states.Tally()  # what the vendor's codes said, reported (states.py)
        self.has_wallclock = fmt != "neware_nda"  # NewareNDA gives UTC stamps; the others local time

    @property
    def key(self) -> str:
        return f"{self.cell}:{self.identity}"

    def resume(self, identity_: str, offset: int, row: int) -> None:
        if identity(self.path) == identity_:
            self.identity, self.row = identity_, row

    def poll(self, max_bytes: int = 0, final: bool = False) -> tuple[Parsed | None, Progress]:
        """The rows not handed out yet (the whole file is read: ``max_bytes`` does not apply)."""
        st = os.stat(self.path)
        progress = Progress()
        if self._seen == (st.st_size, st.st_mtime_ns):
            self.finished = True
            return None, progress
        if not final and self.clock() - self._read_at < self.min_reread_s:
            return None, progress  # changed, but read again only when the gap has passed (the next poll after)
        ident = identity(self.path)
        if self.identity and ident != self.identity:
            progress.restarted, self.row = "replaced", 0
        self.identity = ident
        parsed = read_native(self.path, self.fmt, self.tz)
        self.reads += 1
        self._read_at = self.clock()
        self._seen = (st.st_size, st.st_mtime_ns)
        if len(parsed) < self.row:
            progress.restarted, self.row = "rewritten", 0
        out = parsed.select(parsed.row >= self.row)
        self.row = len(parsed)
        if len(out):
            progress.notes = states.notes_for(self.path.name, out, NATIVE_PHASES.get(self.fmt, {}), self.tally)
        return (out if len(out) else None), progress

    def batch(self, parsed: Parsed, cells: tuple[str, ...], cell_index: int) -> ReadingBatch:
        return to_batch(self.key, parsed, cells, cell_index)


Source = TextSource | NativeSource


def open_source(
    path: Path,
    cell: str,
    fmt: str = "auto",
    tz: str = "UTC",
    start_ms: int | None = None,
    native_min_reread_s: float = 0.0,
) -> Source:
    """The reader for ``path``: by ``fmt``, or for ``auto`` by the extension (native) or the header (text)."""
    if fmt == "auto":
        fmt = NATIVE.get(path.suffix.lower(), "auto")
    if fmt in NATIVE_FORMATS:
        return NativeSource(path, cell, fmt, tz, native_min_reread_s)
    return TextSource(path, cell, fmt, tz, start_ms)
