"""A simulated rig served as a line-based instrument on a serial port (a SCPI cycler or a streaming logger).

Query profiles: the emulator answers each query of the profile (``send`` with ``{channel}``) in the profile's
``reply`` format; a query for a channel it does not have gets no answer, as SCPI instruments do (the error goes
to their error queue). Stream profiles: it writes one line per channel every tick.

Fault modes (``fault = mode``): ``silent`` (no answers, no lines), ``garbage`` (a line of random bytes before
every answer or line), ``truncate`` (answers without their terminator), ``error`` (a SCPI error string instead of
the answer). Out-of-range values come from ``RigFeed.set_override``.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading

import serial

from drivers.base import FIELDS
from drivers.emulator import Emulator, RigFeed
from drivers.profiles import unit_conversion
from drivers.serial.lines import LineSplitter
from drivers.serial.profile import LineFormat, SerialProfile, load_profile

MODES = ("silent", "garbage", "truncate", "error")
_SPEC = re.compile(r"\{(\w+):([^}]*)\}")


class SerialEmulator(Emulator):
    def __init__(
        self,
        feed: RigFeed,
        profile: SerialProfile | str,
        port: str,
        channels: list[int] | None = None,
        baudrate: int = 115200,
    ):
        super().__init__(feed)
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.port_name, self.baudrate = port, baudrate
        self.channels = channels or list(range(1, feed.n + 1))
        if len(self.channels) > feed.n:
            raise ValueError(f"{len(self.channels)} channels, the rig has {feed.n} cells")
        self.cell_of = {ch: k for k, ch in enumerate(self.channels)}
        for fmt in [*self.profile.queries, *([self.profile.stream] if self.profile.stream else [])]:
            if not fmt.reply:
                raise ValueError(f"profile {self.profile.name}: every query/stream needs a 'reply' format to emulate")
        pats = []
        for q in self.profile.queries:
            rx = re.escape(q.send).replace(re.escape("{channel}"), r"(?P<channel>\d+)")
            pats.append((re.compile(rx), q))
        self.patterns = pats
        self.fault: str | None = None
        self.queries = self.unanswered = self.lines_sent = 0
        self.port: serial.Serial | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wlock = threading.Lock()

    # ------------------------------------------------------------------ formatting
    def line_for(self, fmt: LineFormat, cell: int, channel: int) -> str:
        _, values = self.feed.snapshot()
        args: dict[str, float | int] = {"channel": channel}
        for k, f in enumerate(FIELDS):
            factor, uoff = unit_conversion(fmt.units.get(f, ""), f)
            a, b = fmt.scale.get(f, 1.0) * factor, fmt.offset.get(f, 0.0) * factor + uoff
            args[f] = (float(values[cell, k]) - b) / a
        return (fmt.reply or "").format(**args)

    def tolerance(self, field: str) -> float:
        """Largest rounding error of a field's value as the replies format it (values below 1000)."""
        worst = 0.0
        for fmt in [*self.profile.queries, *([self.profile.stream] if self.profile.stream else [])]:
            for name, spec in _SPEC.findall(fmt.reply or ""):
                if name != field:
                    continue
                p = re.search(r"\.(\d+)", spec)
                digits = int(p.group(1)) if p else 6
                step = 10.0 ** (3 - digits) if spec[-1:] in "eEgG" else 10.0**-digits
                worst = max(worst, step / 2 * abs(fmt.scale.get(field, 1.0)))
        return worst

    # ------------------------------------------------------------------ wire
    def _write(self, text: str, terminate: bool = True) -> None:
        prof = self.profile
        data = text.encode(prof.encoding, errors="replace") + (prof.terminator.encode() if terminate else b"")
        mode = self.fault
        if mode == "garbage":
            junk = bytes(random.choice(range(256)) for _ in range(random.randint(1, 40)))
            data = junk.replace(prof.terminator.encode(), b"") + prof.terminator.encode() + data
        if self.port is None:
            return
        with self._wlock:
            try:
                self.port.write(data)
                self.lines_sent += 1
            except (serial.SerialException, OSError):
                pass

    def _answer(self, line: str) -> None:
        self.queries += 1
        if self.fault == "silent":
            return
        for rx, q in self.patterns:
            m = rx.fullmatch(line.strip())
            if m is None:
                continue
            ch = int(m.group("channel")) if "channel" in rx.groupindex else self.channels[0]
            cell = self.cell_of.get(ch)
            if cell is None:
                self.unanswered += 1  # no such channel: SCPI queues an error and sends nothing
                return
            if self.fault == "error":
                self._write('-222,"Data out of range"')
            else:
                self._write(self.line_for(q, cell, ch), terminate=self.fault != "truncate")
            return
        self.unanswered += 1  # *CLS and other commands: no answer

    def _serve(self) -> None:
        prof = self.profile
        split = LineSplitter((prof.send_terminator or prof.terminator).encode(), 1024, prof.encoding)
        while not self._stop.is_set():
            try:
                assert self.port is not None
                data = self.port.read(max(1, self.port.in_waiting))
            except (serial.SerialException, OSError, TypeError, AttributeError):
                return
            for line in split.feed(data):
                self._answer(line)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.port = await asyncio.to_thread(
            serial.Serial, self.port_name, baudrate=self.baudrate, timeout=0.05, write_timeout=0.5
        )
        self._stop.clear()
        if self.profile.queries:
            self._thread = threading.Thread(target=self._serve, name="serial-emulator", daemon=True)
            self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
            self._thread = None
        if self.port is not None:
            port, self.port = self.port, None
            port.close()

    async def on_tick(self) -> None:
        """Stream profiles: one line per channel after every step of the rig."""
        stream = self.profile.stream
        if stream is not None and self.fault != "silent":
            for cell, ch in enumerate(self.channels):
                await asyncio.to_thread(self._write, self.line_for(stream, cell, ch), self.fault != "truncate")
