"""Bytes from a serial line into text lines, with a bounded buffer and resynchronisation on garbage.

A line longer than ``max_line_bytes`` without a terminator is garbage: the splitter drops what it has and
everything up to the next terminator, then carries on with the line after it. Bytes that do not decode in the
profile's encoding make the line garbage too. Nothing here raises on any input.
"""

from __future__ import annotations

import time
from typing import Any


class LineSplitter:
    def __init__(self, terminator: bytes, max_line_bytes: int = 256, encoding: str = "ascii"):
        self.term = terminator
        self.max = max_line_bytes
        self.encoding = encoding
        self.buf = bytearray()
        self.discarding = False  # inside an overlong line: drop up to the next terminator
        self.garbage = 0  # lines (or line fragments) thrown away

    def reset(self) -> None:
        self.buf.clear()
        self.discarding = False

    def feed(self, data: bytes) -> list[str]:
        """Add received bytes; return the complete lines they finish (decoded, terminator removed)."""
        self.buf += data
        out: list[str] = []
        while True:
            k = self.buf.find(self.term)
            if k < 0:
                break
            raw = bytes(self.buf[:k])
            del self.buf[: k + len(self.term)]
            if self.discarding:
                self.discarding = False
                continue
            if len(raw) > self.max:
                self.garbage += 1
                continue
            try:
                out.append(raw.decode(self.encoding).strip("\r\n"))
            except UnicodeDecodeError:
                self.garbage += 1
        if len(self.buf) > self.max:
            self.buf.clear()
            if not self.discarding:
                self.garbage += 1
            self.discarding = True
        return out


class LineReader:
    """Reads lines from a pyserial port (blocking; call from a worker thread)."""

    def __init__(self, port: Any, splitter: LineSplitter):
        self.port = port
        self.split = splitter
        self.lines: list[str] = []

    def reset(self) -> None:
        """Forget anything received so far: a late answer to an old query must not pass for a new one."""
        self.port.reset_input_buffer()
        self.split.reset()
        self.lines.clear()

    def readline(self, deadline: float) -> str | None:
        """The next line, or None when ``deadline`` (time.monotonic) passes first."""
        while not self.lines:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.port.timeout = min(left, 0.05)
            data = self.port.read(max(1, min(self.port.in_waiting, 4096)))
            if data:
                self.lines.extend(self.split.feed(data))
        return self.lines.pop(0)
