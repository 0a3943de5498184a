"""The ``serial`` driver: line-based instruments on a serial port (pyserial), one cell per instrument channel.

Query mode (a SCPI cycler): every ``poll_interval_s`` each channel is asked each of the profile's queries, the
input is flushed before every query (so a late answer never passes for the next one), and lines that do not
parse are skipped as garbage until a good one or the timeout. A channel that does not answer is retried with
backoff and reported on its own; the whole poll stops early only when the instrument gives nothing at all.
Stream mode (a logger): a reader thread parses lines as they come and ``read`` samples at ``sample_hz``.
The blocking I/O runs in a worker thread; a port that fails (unplugged) makes ``read`` raise for a restart.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import numpy as np
import serial
from pydantic import Field, PrivateAttr, model_validator

from drivers.base import DriverConfig, DriverContext, DriverError, ReadingBatch
from drivers.pacing import Pacer
from drivers.profiles import cell_ids
from drivers.sampling import Deltas, SampledDriver
from drivers.serial.lines import LineReader, LineSplitter
from drivers.serial.profile import LineFormat, LineParser, Query, SerialProfile, load_profile
from drivers.stale import DeviceHealth, Freshness


class SerialConfig(DriverConfig):
    type: Literal["serial"] = "serial"
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0")
    baudrate: int = Field(115200, ge=50, le=4_000_000)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    profile: str = Field(description="built-in profile (e.g. 'scpi_cycler') or path to a profile TOML file")
    device: str = Field("", description="the instrument's name in events (default: the driver name)")
    channels: list[int] = Field(
        default_factory=lambda: [1],
        min_length=1,
        max_length=4096,
        description="instrument channels, one cell each, in cell order",
    )
    cells: list[str] | None = None
    cell_prefix: str | None = Field(None, description="default: '<driver name or type>-c'")
    poll_interval_s: float = Field(1.0, gt=0, le=3600, description="query mode: time between polls")
    sample_hz: float = Field(1.0, gt=0, le=1000, description="stream mode: rows per cell per second")
    timeout_s: float = Field(0.5, gt=0, le=60, description="wait this long for one answer")
    stale_after_s: float | None = Field(
        None, gt=0, description="default: 2.5 poll intervals (query mode), 3 s (stream mode)"
    )
    down_after_s: float = Field(5.0, gt=0, le=86400)
    backoff_max_s: float = Field(30.0, gt=0, le=3600, description="longest gap between probes of a dead channel")

    _profile: SerialProfile = PrivateAttr()
    _cell_ids: tuple[str, ...] = PrivateAttr()

    @model_validator(mode="after")
    def _resolve(self) -> SerialConfig:
        self._profile = load_profile(self.profile)
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must be unique")
        prefix = self.cell_prefix if self.cell_prefix is not None else f"{self.name or self.type}-c"
        self._cell_ids = cell_ids(len(self.channels), self.cells, prefix)
        return self


class SerialDriver(SampledDriver):
    """Query mode: each sample is one poll in a worker thread (``_sample``), spaced by the instrument's backoff
    while it fails. Stream mode: the reader thread (``_receive``) parses lines into ``fresh``; each sample reports
    the news and returns the state."""

    config_model = SerialConfig
    config: SerialConfig
    fresh: Freshness

    def __init__(self, config: SerialConfig, ctx: DriverContext):
        prof = config._profile
        self.streaming = prof.stream is not None
        super().__init__(config, ctx, Pacer(1.0 / config.sample_hz if self.streaming else config.poll_interval_s))
        self.threaded = self.streaming
        self.profile = prof
        self._cells = config._cell_ids
        stale = config.stale_after_s or (3.0 if self.streaming else 2.5 * config.poll_interval_s)
        self.fresh = Freshness(len(self._cells), stale * 1000, config.down_after_s * 1000)
        formats: list[LineFormat] = [*prof.queries] or ([prof.stream] if prof.stream is not None else [])
        self.parsers = [LineParser(f) for f in formats]
        self.channel_index = {ch: k for k, ch in enumerate(config.channels)}
        self.port: serial.Serial | None = None
        self.reader: LineReader | None = None
        self.health: DeviceHealth | None = None
        self.channel_health: list[DeviceHealth] = []
        self._next_try = np.zeros(len(self._cells))  # monotonic time of a failing channel's next probe
        self.lines_ok = self.unknown_channel = 0
        self._chan_lines = np.zeros(len(self._cells), np.int64)  # stream mode: lines per channel
        self._chan_seen = np.zeros(len(self._cells), np.int64)
        self._news = Deltas()

    @property
    def cells(self) -> tuple[str, ...]:
        return self._cells

    @property
    def garbage(self) -> int:
        return self.reader.split.garbage if self.reader else 0

    async def _open_transport(self) -> None:
        cfg = self.config
        try:
            self.port = await asyncio.to_thread(
                serial.Serial,
                cfg.port,
                baudrate=cfg.baudrate,
                bytesize=cfg.bytesize,
                parity=cfg.parity,
                stopbits=cfg.stopbits,
                timeout=0.05,
                write_timeout=1.0,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DriverError(f"cannot open serial port {cfg.port}: {exc}") from exc
        prof = self.profile
        self.reader = LineReader(
            self.port, LineSplitter(prof.terminator.encode(prof.encoding), prof.max_line_bytes, prof.encoding)
        )
        now = self.ctx.clock_ms()
        name = cfg.device or self.name
        self.health = self._device_health(name, now)
        self.channel_health = [self._device_health(f"{name}:ch{ch}", now) for ch in cfg.channels]
        if prof.init:
            await asyncio.to_thread(self._send_init)

    def _device_health(self, name: str, now_ms: int) -> DeviceHealth:
        cfg = self.config
        return DeviceHealth(
            name,
            self.emit,
            cfg.down_after_s * 1000,
            now_ms,
            retry_initial_s=cfg.poll_interval_s,
            retry_max_s=cfg.backoff_max_s,
        )

    def _close_transport(self) -> None:
        if self.port is not None:
            port, self.port = self.port, None
            port.close()

    def _failure_message(self, exc: BaseException) -> str:
        return f"serial port {self.config.port} failed: {exc!r}"

    def _send(self, text: str) -> None:
        prof = self.profile
        assert self.port is not None
        self.port.write((text + (prof.send_terminator or prof.terminator)).encode(prof.encoding))

    def _send_init(self) -> None:
        for cmd in self.profile.init:
            self._send(cmd)

    async def _sample(self, now_ms: int, ticks: int) -> ReadingBatch:
        return await (self._sample_stream(now_ms) if self.streaming else self._sample_query())

    # ------------------------------------------------------------------ query mode (worker thread)
    def _interval_s(self) -> float | None:
        """A silent instrument is probed with backoff, not at the poll rate."""
        if self.streaming or self.health is None:
            return None
        return self.health.retry_delay_s(self.config.poll_interval_s)

    def _poll(self) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str, str]]]:
        """One round over the channels: values (n, 3), which were refreshed, per-channel faults."""
        cfg = self.config
        n = len(self._cells)
        values, mask = np.full((n, 3), np.nan), np.zeros((n, 3), bool)
        faults: list[tuple[int, str, str]] = []
        heard = silent_run = 0
        now = time.monotonic()
        for k, ch in enumerate(cfg.channels):
            if now < self._next_try[k]:
                continue
            for q, parser in zip(self.profile.queries, self.parsers):
                got, heard_q, fault = self._ask(q, parser, ch)
                heard += heard_q
                if got is None:
                    faults.append((k, *fault))
                    silent_run += 1
                    break  # the channel failed this round: skip its other queries
                silent_run = 0
                for f, v in got.items():
                    values[k, f], mask[k, f] = v, True
            if heard == 0 and silent_run >= 2:
                break  # the instrument is silent: do not wait out every channel
        return values, mask, faults

    def _ask(self, q: Query, parser: LineParser, ch: int) -> tuple[dict[int, float] | None, int, tuple[str, str]]:
        """Send one query; (values or None, lines heard, (fault kind, message) if no valid answer)."""
        reader = self.reader
        assert reader is not None
        timeout_s = self.config.timeout_s
        reader.reset()
        self._send(q.send.format(channel=ch))
        deadline = time.monotonic() + timeout_s
        heard, bad_lines, last_bad = 0, 0, ""
        while (line := reader.readline(deadline)) is not None:
            heard += 1
            parsed = parser.parse(line)
            if parsed is not None:
                return parsed[1], heard, ("", "")
            reader.split.garbage += 1
            bad_lines, last_bad = bad_lines + 1, line
        what = f"no valid answer to {q.send.format(channel=ch)!r} within {timeout_s:g} s"
        if bad_lines:
            what += f" ({bad_lines} unparsable line(s), last {last_bad[:60]!r})"
        return None, heard, ("garbage" if bad_lines else "timeout", what)

    async def _sample_query(self) -> ReadingBatch:
        cfg = self.config
        assert self.health is not None
        try:
            values, mask, faults = await asyncio.to_thread(self._poll)
        except Exception as exc:
            raise DriverError(self._failure_message(exc)) from exc
        now = self.ctx.clock_ms()
        answered = np.asarray(mask.any(axis=1), dtype=bool)
        by_channel: dict[int, dict[str, str]] = {}
        for k, kind, msg in faults:
            by_channel.setdefault(k, {})[kind] = msg
        mono = time.monotonic()
        for k, h in enumerate(self.channel_health):
            if answered[k] or k in by_channel:
                h.report(now, bool(answered[k]), by_channel.get(k))
                self._next_try[k] = 0.0 if answered[k] else mono + h.retry_delay_s(cfg.poll_interval_s)
            else:
                h.check(now)
        any_answer = bool(answered.any())
        self.health.report(now, any_answer, {} if any_answer or not faults else {faults[0][1]: faults[0][2]})
        if not any_answer:
            return ReadingBatch.empty(self._cells)
        self.lines_ok += int(mask.sum())
        self.fresh.update(mask, values, ~np.isfinite(values), now)
        return self.snapshot(now, np.flatnonzero(answered))

    # ------------------------------------------------------------------ stream mode
    def _receive(self) -> None:
        reader = self.reader
        assert reader is not None
        line = reader.readline(time.monotonic() + 0.1)  # SerialException, OSError: the port is gone
        if line is None:
            return
        parsed = self.parsers[0].parse(line)
        if parsed is None:
            reader.split.garbage += 1
            return
        ch, vals = parsed
        k = self.channel_index.get(ch) if ch is not None else None
        if k is None:
            self.unknown_channel += 1
            return
        fields = np.fromiter(vals.keys(), np.int64, len(vals))
        with self.lock:
            self.fresh.update_points(
                np.full(len(vals), k),
                fields,
                np.fromiter(vals.values(), float, len(vals)),
                time.time_ns() // 1_000_000,
            )
        self.lines_ok += 1
        self._chan_lines[k] += 1

    async def _sample_stream(self, now: int) -> ReadingBatch:
        cfg = self.config
        news = self._news.since_last(ok=self.lines_ok, bad=self.garbage)
        ok, bad = news["ok"], news["bad"]
        assert self.health is not None
        self.health.report(now, ok > 0, {"garbage": f"{bad} unparsable line(s) on {cfg.port}"} if bad else {})
        got = self._chan_lines.copy()
        fresh_ch, self._chan_seen = got > self._chan_seen, got
        if ok:  # the instrument talks: a channel it keeps leaving out is down (after a grace once it is back)
            grace = now - self.health.since_ms < cfg.down_after_s * 1000
            for k, h in enumerate(self.channel_health):
                if fresh_ch[k] or not grace:
                    h.report(now, bool(fresh_ch[k]))
        return self.snapshot(now)

    def status(self) -> dict[str, Any]:
        now = self.ctx.clock_ms()
        return {
            "device": self.health.status(now) if self.health else {},
            "channels": {h.name: h.state for h in self.channel_health},
            "lines_ok": self.lines_ok,
            "garbage_lines": self.garbage,
            "unknown_channel": self.unknown_channel,
        }
