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
import threading
import time
from typing import Any, Literal

import numpy as np
import serial
from pydantic import Field, PrivateAttr, model_validator

from drivers.base import Driver, DriverConfig, DriverContext, DriverError, ReadingBatch
from drivers.profiles import cell_ids
from drivers.serial.lines import LineReader, LineSplitter
from drivers.serial.profile import LineParser, SerialProfile, load_profile
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


class SerialDriver(Driver):
    config_model = SerialConfig

    def __init__(self, config: SerialConfig, ctx: DriverContext):
        super().__init__(config, ctx)
        prof = config._profile
        self.profile = prof
        self._cells = config._cell_ids
        self.streaming = prof.stream is not None
        stale = config.stale_after_s or (3.0 if self.streaming else 2.5 * config.poll_interval_s)
        self.fresh = Freshness(len(self._cells), stale * 1000, config.down_after_s * 1000)
        self.parsers = [LineParser(q) for q in prof.queries] or [LineParser(prof.stream)]  # type: ignore[arg-type]
        self.channel_index = {ch: k for k, ch in enumerate(config.channels)}
        self.port: serial.Serial | None = None
        self.reader: LineReader | None = None
        self.lock = threading.Lock()
        self.health: DeviceHealth | None = None
        self.channel_health: list[DeviceHealth] = []
        self._next_try = np.zeros(len(self._cells))  # monotonic time of a failing channel's next probe
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._fatal: BaseException | None = None
        self.lines_ok = self.unknown_channel = 0
        self._chan_lines = np.zeros(len(self._cells), np.int64)  # stream mode: lines per channel
        self._chan_seen = np.zeros(len(self._cells), np.int64)
        self._seen_ok = self._seen_garbage = 0
        self._next = 0.0

    @property
    def cells(self) -> tuple[str, ...]:
        return self._cells

    @property
    def garbage(self) -> int:
        return self.reader.split.garbage if self.reader else 0

    async def open(self) -> None:
        cfg: SerialConfig = self.config  # type: ignore[assignment]
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
        self.health = DeviceHealth(
            name,
            self.emit,
            cfg.down_after_s * 1000,
            now,
            retry_initial_s=cfg.poll_interval_s,
            retry_max_s=cfg.backoff_max_s,
        )
        self.channel_health = [
            DeviceHealth(
                f"{name}:ch{ch}",
                self.emit,
                cfg.down_after_s * 1000,
                now,
                retry_initial_s=cfg.poll_interval_s,
                retry_max_s=cfg.backoff_max_s,
            )
            for ch in cfg.channels
        ]
        if prof.init:
            await asyncio.to_thread(self._send_init)
        self._next = time.monotonic()
        if self.streaming:
            self._thread = threading.Thread(target=self._stream_reader, name=f"serial:{self.name}", daemon=True)
            self._thread.start()

    def _send(self, text: str) -> None:
        prof = self.profile
        assert self.port is not None
        self.port.write((text + (prof.send_terminator or prof.terminator)).encode(prof.encoding))

    def _send_init(self) -> None:
        for cmd in self.profile.init:
            self._send(cmd)

    # ------------------------------------------------------------------ query mode (worker thread)
    def _poll(self) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str, str]]]:
        """One round over the channels: values (n, 3), which were refreshed, per-channel faults."""
        cfg: SerialConfig = self.config  # type: ignore[assignment]
        assert self.reader is not None
        n = len(self._cells)
        values, mask = np.full((n, 3), np.nan), np.zeros((n, 3), bool)
        faults: list[tuple[int, str, str]] = []
        heard = silent_run = 0
        now = time.monotonic()
        for k, ch in enumerate(cfg.channels):
            if now < self._next_try[k]:
                continue
            for q, parser in zip(self.profile.queries, self.parsers):
                self.reader.reset()
                self._send(q.send.format(channel=ch))
                deadline = time.monotonic() + cfg.timeout_s
                got, bad_lines, last_bad = None, 0, ""
                while got is None:
                    line = self.reader.readline(deadline)
                    if line is None:
                        break
                    heard += 1
                    parsed = parser.parse(line)
                    if parsed is None:
                        self.reader.split.garbage += 1
                        bad_lines, last_bad = bad_lines + 1, line
                        continue
                    got = parsed[1]
                if got is None:
                    what = f"no valid answer to {q.send.format(channel=ch)!r} within {cfg.timeout_s:g} s"
                    if bad_lines:
                        what += f" ({bad_lines} unparsable line(s), last {last_bad[:60]!r})"
                    faults.append((k, "garbage" if bad_lines else "timeout", what))
                    silent_run += 1
                    break  # the channel failed this round: skip its other queries
                silent_run = 0
                for f, v in got.items():
                    values[k, f], mask[k, f] = v, True
            if heard == 0 and silent_run >= 2:
                break  # the instrument is silent: do not wait out every channel
        return values, mask, faults

    async def _read_query(self) -> ReadingBatch:
        cfg: SerialConfig = self.config  # type: ignore[assignment]
        assert self.health is not None
        self._next += self.health.retry_delay_s(cfg.poll_interval_s) if self.health.failures else cfg.poll_interval_s
        delay = self._next - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            self._next = time.monotonic()
        try:
            values, mask, faults = await asyncio.to_thread(self._poll)
        except Exception as exc:
            raise DriverError(f"serial port {cfg.port} failed: {exc!r}") from exc
        now = self.ctx.clock_ms()
        answered = mask.any(axis=1)
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
        self.health.report(
            now, bool(answered.any()), {} if answered.any() or not faults else {faults[0][1]: faults[0][2]}
        )
        if not answered.any():
            return ReadingBatch.empty(self._cells)
        self.lines_ok += int(mask.sum())
        self.fresh.update(mask, values, ~np.isfinite(values), now)
        return self.fresh.batch(self._cells, now, np.flatnonzero(answered))

    # ------------------------------------------------------------------ stream mode
    def _stream_reader(self) -> None:
        assert self.reader is not None and self.port is not None
        parser = self.parsers[0]
        while not self._stop.is_set():
            try:
                line = self.reader.readline(time.monotonic() + 0.1)
            except Exception as exc:  # noqa: BLE001 - SerialException, OSError, termios.error: the port is gone
                if not self._stop.is_set():
                    self._fatal = exc
                return
            if line is None:
                continue
            parsed = parser.parse(line)
            if parsed is None:
                self.reader.split.garbage += 1
                continue
            ch, vals = parsed
            k = self.channel_index.get(ch) if ch is not None else None
            if k is None:
                self.unknown_channel += 1
                continue
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

    async def _read_stream(self) -> ReadingBatch:
        cfg: SerialConfig = self.config  # type: ignore[assignment]
        self._next += 1.0 / cfg.sample_hz
        delay = self._next - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            self._next = time.monotonic()
        if self._fatal is not None:
            raise DriverError(f"serial port {cfg.port} failed: {self._fatal!r}") from self._fatal
        now = self.ctx.clock_ms()
        ok, bad = self.lines_ok - self._seen_ok, self.garbage - self._seen_garbage
        self._seen_ok, self._seen_garbage = self.lines_ok, self.garbage
        assert self.health is not None
        self.health.report(now, ok > 0, {"garbage": f"{bad} unparsable line(s) on {cfg.port}"} if bad else {})
        got = self._chan_lines.copy()
        fresh_ch, self._chan_seen = got > self._chan_seen, got
        if ok:  # the instrument talks: a channel it keeps leaving out is down (after a grace once it is back)
            grace = now - self.health.since_ms < cfg.down_after_s * 1000
            for k, h in enumerate(self.channel_health):
                if fresh_ch[k] or not grace:
                    h.report(now, bool(fresh_ch[k]))
        with self.lock:
            return self.fresh.batch(self._cells, now)

    async def read(self) -> ReadingBatch:
        return await (self._read_stream() if self.streaming else self._read_query())

    async def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
            self._thread = None
        if self.port is not None:
            try:
                self.port.close()
            except Exception:  # noqa: BLE001 - closing must not raise
                pass
            self.port = None

    def status(self) -> dict[str, Any]:
        now = self.ctx.clock_ms()
        return {
            "device": self.health.status(now) if self.health else {},
            "channels": {h.name: h.state for h in self.channel_health},
            "lines_ok": self.lines_ok,
            "garbage_lines": self.garbage,
            "unknown_channel": self.unknown_channel,
        }
