"""The ``can`` driver: listens on a CAN bus (any python-can interface) and samples what a BMS broadcasts.

A reader thread receives frames, decodes them with the profile's DBC (cantools) and keeps the latest value of
every (cell, field) with its arrival time; nothing queues up, however fast the bus. ``read`` samples that state
``sample_hz`` times a second: one row per cell, values older than their message's cycle time allows flagged
STALE, values older than ``down_after_s`` dropped (NaN). Error frames and bus-off are reported as events; a dead
interface (adapter unplugged) ends the thread and ``read`` raises, so the supervisor reopens the bus.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Literal

import can
from pydantic import Field, PrivateAttr, model_validator

from drivers.base import DriverConfig, DriverContext, DriverError, ReadingBatch
from drivers.can.dbcmap import CORRUPT, OK, FrameDecoder, Updates
from drivers.can.profile import LoadedProfile, load_profile
from drivers.pacing import Pacer
from drivers.profiles import cell_ids
from drivers.sampling import Deltas, SampledDriver
from drivers.stale import DeviceHealth, Freshness

log = logging.getLogger("drivers.can")

CAN_ERR_CRTL, CAN_ERR_BUSOFF = 0x04, 0x40  # SocketCAN error classes (in an error frame's arbitration id)
CAN_ERR_CRTL_PASSIVE = 0x10 | 0x20  # rx / tx error passive (data[1])
FLUSH_FRAMES, FLUSH_S = 512, 0.02
EVENT_GAP_S = 10.0


class CanConfig(DriverConfig):
    type: Literal["can"] = "can"
    interface: str = Field(
        "socketcan", description="python-can interface: socketcan, slcan, pcan, kvaser, virtual, ..."
    )
    channel: str = Field(description="e.g. can0, /dev/ttyACM0 (slcan), PCAN_USBBUS1")
    bitrate: int | None = Field(500_000, ge=5_000, le=8_000_000, description="None: leave the interface's")
    bus_options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="more can.Bus arguments, e.g. {tty_baudrate = 115200}"
    )
    profile: str = Field(description="built-in profile (e.g. 'bms16') or path to a mapping TOML naming a DBC")
    dbc: str | None = Field(None, description="use this DBC file instead of the profile's")
    device: str = Field("", description="the BMS's name in events (default: the profile name)")
    cells: list[str] | None = None
    cell_prefix: str | None = Field(None, description="default: '<driver name or type>-c'")
    sample_hz: float = Field(10.0, gt=0, le=1000, description="rows per cell per second")
    down_after_s: float = Field(5.0, gt=0, le=86400, description="no mapped frame this long: BMS reported down")

    _loaded: LoadedProfile = PrivateAttr()
    _cell_ids: tuple[str, ...] = PrivateAttr()

    @model_validator(mode="after")
    def _resolve(self) -> CanConfig:
        self._loaded = load_profile(self.profile, self.dbc)
        FrameDecoder(self._loaded)  # mapping errors surface at config check, not at run time
        prefix = self.cell_prefix if self.cell_prefix is not None else f"{self.name or self.type}-c"
        self._cell_ids = cell_ids(self._loaded.profile.cells, self.cells, prefix)
        return self


class CanDriver(SampledDriver):
    """Reader thread (``_receive``): frames into ``fresh``; each sample (``_sample``): the news as health and
    events, and the state as one row per cell."""

    config_model = CanConfig
    config: CanConfig
    fresh: Freshness
    threaded = True

    def __init__(self, config: CanConfig, ctx: DriverContext):
        super().__init__(config, ctx, Pacer(1.0 / config.sample_hz))
        self.decoder = FrameDecoder(config._loaded)
        self._cells = config._cell_ids
        self.fresh = Freshness(len(self._cells), self.decoder.stale_after_ms, config.down_after_s * 1000)
        self.bus: can.BusABC | None = None
        # Counters written by the reader thread, read (never reset) by the event loop.
        self.frames = self.decoded = self.unknown = self.corrupt = 0
        self.error_frames = self.bus_off = self.passive = 0
        self.last_corrupt = ""
        self._news = Deltas()
        self._bus_off_state = False
        self._last_error_event = 0.0
        self.health: DeviceHealth | None = None
        self._updates = Updates()
        self._pending = 0  # decoded frames not yet applied to ``fresh``
        self._last_flush = self._last_state = 0.0

    @property
    def cells(self) -> tuple[str, ...]:
        return self._cells

    async def _open_transport(self) -> None:
        cfg = self.config
        kwargs: dict[str, Any] = dict(cfg.bus_options)
        if cfg.bitrate is not None:
            kwargs.setdefault("bitrate", cfg.bitrate)
        try:
            self.bus = await asyncio.to_thread(can.Bus, interface=cfg.interface, channel=cfg.channel, **kwargs)
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            raise DriverError(f"cannot open CAN interface {cfg.interface} channel {cfg.channel}: {exc}") from exc
        self.health = DeviceHealth(
            cfg.device or cfg._loaded.profile.name, self.emit, cfg.down_after_s * 1000, self.ctx.clock_ms()
        )
        self._last_flush = self._last_state = time.monotonic()

    def _close_transport(self) -> None:
        if self.bus is not None:
            bus, self.bus = self.bus, None
            bus.shutdown()

    def _failure_message(self, exc: BaseException) -> str:
        return f"CAN interface failed: {exc}"

    # ------------------------------------------------------------------ reader thread
    def _receive(self) -> None:
        bus = self.bus
        assert bus is not None
        try:
            msg = bus.recv(timeout=0.05)
        except (can.CanOperationError, OSError) as exc:
            if isinstance(exc.__cause__, (UnicodeDecodeError, ValueError, IndexError)):
                self._garbled(bus, exc.__cause__)
                return
            raise  # the interface is gone: the base records it and read() raises
        except Exception as exc:  # noqa: BLE001 - a garbled frame inside the interface (slcan's parser)
            self._garbled(bus, exc)
            return
        if msg is not None:
            self.frames += 1
            if msg.is_error_frame:
                self._error_frame(msg)
            else:
                self._decode(msg)
        now = time.monotonic()
        if self._pending and (self._pending >= FLUSH_FRAMES or now - self._last_flush >= FLUSH_S or msg is None):
            with self.lock:
                self._updates.apply(self.fresh, time.time_ns() // 1_000_000)
            self._pending, self._last_flush = 0, now
        if now - self._last_state >= 1.0:
            self._last_state = now
            try:
                if bus.state == can.BusState.ERROR:
                    self.bus_off += 1
            except (NotImplementedError, can.CanError, OSError):
                pass

    def _decode(self, msg: can.Message) -> None:
        rc = self.decoder.decode(msg.arbitration_id, msg.is_extended_id, bytes(msg.data), self._updates)
        if rc == OK:
            self.decoded += 1
            self._pending += 1
        elif rc == CORRUPT:
            self.corrupt += 1
            self.last_corrupt = (
                f"frame 0x{msg.arbitration_id:X} [{msg.dlc}] {bytes(msg.data).hex()} does not decode with the DBC"
            )
        else:
            self.unknown += 1

    def _garbled(self, bus: can.BusABC, exc: BaseException) -> None:
        """Bytes the interface could not parse (slcan over a noisy serial link)."""
        self.corrupt += 1
        self.last_corrupt = f"the interface could not parse what it received: {exc!r}"[:200]
        # python-can 4.6's slcan keeps undecodable bytes in its line buffer, so every later frame fails too;
        # dropping the buffer resynchronises on the next line terminator.
        buf = getattr(bus, "_buffer", None)
        if isinstance(buf, bytearray):
            buf.clear()

    def _error_frame(self, msg: can.Message) -> None:
        self.error_frames += 1
        if msg.arbitration_id & CAN_ERR_BUSOFF:
            self.bus_off += 1
        elif msg.arbitration_id & CAN_ERR_CRTL and len(msg.data) > 1 and msg.data[1] & CAN_ERR_CRTL_PASSIVE:
            self.passive += 1

    # ------------------------------------------------------------------ sampling
    async def _sample(self, now_ms: int, ticks: int) -> ReadingBatch:
        self._report(now_ms)
        return self.snapshot(now_ms)

    def _report(self, now_ms: int) -> None:
        d = self._news.since_last(
            frames=self.frames,
            decoded=self.decoded,
            corrupt=self.corrupt,
            error_frames=self.error_frames,
            bus_off=self.bus_off,
            passive=self.passive,
        )
        faults = {"corrupt_frame": f"{d['corrupt']} corrupt frame(s), e.g. {self.last_corrupt}"} if d["corrupt"] else {}
        assert self.health is not None
        self.health.report(now_ms, d["decoded"] > 0, faults)
        if d["bus_off"] and not self._bus_off_state:
            self._bus_off_state = True
            self.emit(
                "driver.bus_off",
                f"CAN bus off on {self.config.channel}: the controller stopped transmitting after too many errors",
                level="alarm",
                count=self.bus_off,
            )
        elif self._bus_off_state and d["frames"] > d["error_frames"] and not d["bus_off"]:
            self._bus_off_state = False
            self.emit("driver.bus_recovered", "CAN bus carries frames again after bus off", level="info")
        mono = time.monotonic()
        if (d["error_frames"] or d["passive"]) and mono - self._last_error_event >= EVENT_GAP_S:
            self._last_error_event = mono
            self.emit(
                "driver.bus_error",
                f"{d['error_frames']} CAN error frame(s) since the last report"
                + (" (controller error passive)" if d["passive"] else ""),
                level="warning",
                error_frames=self.error_frames,
                passive=self.passive,
            )

    def status(self) -> dict[str, Any]:
        h = self.health.status(self.ctx.clock_ms()) if self.health else {}
        return {
            "device": h,
            "frames": self.frames,
            "decoded": self.decoded,
            "unknown_ids": self.unknown,
            "corrupt": self.corrupt,
            "error_frames": self.error_frames,
            "bus_off": self.bus_off,
        }
