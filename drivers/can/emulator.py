"""A simulated rig served as a BMS on a CAN bus (python-can, any interface), framed by a driver profile's DBC.

Every message of the DBC that carries mapped signals is sent at its cycle time (``GenMsgCycleTime``, default
100 ms); a multiplexed message is sent once per multiplexer value, so cells k..k+3 travel together as real BMSs
send them. cantools encodes; the signal-to-cell mapping is read from the profile here, independently of the
driver's decoder, so each side checks the other.

Fault modes (``fault = mode``): ``silent`` (send nothing), ``error_frames`` (error frames between data frames),
``bus_off`` (one bus-off error frame, then silence), ``corrupt`` (mapped ids with short payloads and impossible
multiplexer values), ``garbage`` (slcan only: junk ASCII lines on the serial link). Out-of-range values come from
``RigFeed.set_override``; fault bits from ``cell_faults``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import can
import numpy as np

from drivers.can.profile import LoadedProfile, load_profile
from drivers.emulator import Emulator, RigFeed, Schedule
from drivers.profiles import FIELD_INDEX, unit_conversion

log = logging.getLogger("drivers.can.emulator")

MODES = ("silent", "error_frames", "bus_off", "corrupt", "garbage")
CAN_ERR_BUSOFF, CAN_ERR_CRTL = 0x40, 0x04


Target = tuple[Any, str, list[int], float, float]  # (cantools signal, field, rig cells, scale a, offset b)


@dataclass(frozen=True, slots=True)
class _Frame:
    """One frame to send each cycle: a message (with a fixed multiplexer value) and the cells behind its signals."""

    msg: Any  # cantools Message
    mux: dict[str, int]
    signals: list[Target]


class CanEmulator(Emulator):
    def __init__(
        self,
        feed: RigFeed,
        profile: LoadedProfile | str,
        interface: str,
        channel: str,
        bitrate: int | None = 500_000,
        bus_options: dict[str, Any] | None = None,
    ):
        self.feed = feed
        self.loaded = load_profile(profile) if isinstance(profile, str) else profile
        prof = self.loaded.profile
        if prof.cells > feed.n:
            raise ValueError(f"the profile has {prof.cells} cells, the rig {feed.n}")
        self.interface, self.channel, self.bitrate = interface, channel, bitrate
        self.bus_options = dict(bus_options or {})
        self.fault: str | None = None
        self.cell_faults: set[int] = set()
        self.sent = 0
        self.send_errors = 0
        self.bus: can.BusABC | None = None
        self.frames = self._plan()

    def _targets(self, sig: Any) -> tuple[str, list[int], float, float] | None:
        """Which cells a signal carries per the profile's mapping (first matching mapping wins)."""
        n = self.loaded.profile.cells
        for m in self.loaded.profile.signals:
            if m.signal is not None:
                if sig.name != m.signal:
                    continue
                cells = list(range(n)) if m.cell == "all" else [m.cell - 1]
            else:
                hit = re.search(m.pattern or "", sig.name)
                if not hit:
                    continue
                cells = [int(hit.group("cell")) + m.cell_offset - 1]
            if m.field == "fault_bitmap":
                first = 0 if m.cell == "all" else m.cell - 1
                return m.field, list(range(first, first + m.count)), 1.0, 0.0
            if m.field == "fault":
                return m.field, cells, 1.0, 0.0
            factor, uoff = unit_conversion(m.unit if m.unit is not None else (sig.unit or ""), m.field)
            return m.field, cells, m.scale * factor, m.offset * factor + uoff
        return None

    def _plan(self) -> list[tuple[float, _Frame]]:
        out: list[tuple[float, _Frame]] = []
        for msg in self.loaded.db.messages:
            period = (msg.cycle_time or 100) / 1000.0
            mapped = [(s, *t) for s in msg.signals if (t := self._targets(s)) is not None]
            if not mapped:
                continue
            muxers = [s for s in msg.signals if s.is_multiplexer]
            if not muxers:
                out.append((period, _Frame(msg, {}, mapped)))
                continue
            mux = muxers[0]
            ids = sorted({i for s in msg.signals for i in (s.multiplexer_ids or [])})
            for i in ids:
                sigs = [m for m in mapped if not m[0].multiplexer_ids or i in m[0].multiplexer_ids]
                out.append((period, _Frame(msg, {mux.name: i}, sigs)))
        return out

    # ------------------------------------------------------------------ values
    def _payload(self, fr: _Frame, values: np.ndarray) -> bytes:
        data: dict[str, float] = dict(fr.mux)
        for sig in fr.msg.signals:
            if (
                sig.name not in data
                and not sig.is_multiplexer
                and (not sig.multiplexer_ids or set(sig.multiplexer_ids) & set(fr.mux.values()))
            ):
                data[sig.name] = 0 if sig.minimum is None else max(0, sig.minimum)
        for sig, field, cells, a, b in fr.signals:
            if field == "fault_bitmap":
                v = float(sum(1 << k for k, c in enumerate(cells) if c in self.cell_faults))
            elif field == "fault":
                v = float(any(c in self.cell_faults for c in cells))
            else:
                v = (float(np.mean(values[cells, FIELD_INDEX[field]])) - b) / a
            if sig.minimum is not None:
                v = max(v, sig.minimum)
            if sig.maximum is not None:
                v = min(v, sig.maximum)
            data[sig.name] = v
        return bytes(fr.msg.encode(data, scaling=True, padding=False, strict=False))

    def cell_view(self, values: np.ndarray) -> np.ndarray:
        """What a perfect reader gets per rig cell from ``values`` (pack-level signals carry the mean)."""
        out = values.copy()
        for _, fr in self.frames:
            for _, field, cells, _, _ in fr.signals:
                if field in FIELD_INDEX and len(cells) > 1:
                    k = FIELD_INDEX[field]
                    out[..., cells, k] = values[..., cells, k].mean(axis=-1, keepdims=True)
        return out

    def resolution(self, field: str) -> float:
        return max(
            (abs(sig.scale * a) for _, fr in self.frames for sig, f, _, a, _ in fr.signals if f == field), default=0.0
        )

    # ------------------------------------------------------------------ sending
    def _send(self, msg: can.Message) -> None:
        assert self.bus is not None
        try:
            self.bus.send(msg, timeout=0.5)
            self.sent += 1
        except (can.CanError, OSError):  # nobody reads the other end, or it vanished
            self.send_errors += 1

    def _garbage(self) -> None:
        port = getattr(self.bus, "serialPortOrig", None)
        if port is None:
            return
        junk = [b"t30\r", b"tXYZ8DEADBEEF\r", b"T1234\r", bytes(random.getrandbits(8) for _ in range(12)) + b"\r"]
        try:
            port.write(random.choice(junk))
        except (OSError, ValueError):
            self.send_errors += 1

    def send_cycle(self, due: list[_Frame]) -> None:
        mode = self.fault
        if mode in ("silent", "bus_off"):
            return
        _, values = self.feed.snapshot()
        for fr in due:
            if mode == "corrupt":
                bad = bytes([0xFF] * fr.msg.length) if fr.mux else self._payload(fr, values)[:3]
                self._send(
                    can.Message(arbitration_id=fr.msg.frame_id, data=bad, is_extended_id=fr.msg.is_extended_frame)
                )
                continue
            self._send(
                can.Message(
                    arbitration_id=fr.msg.frame_id,
                    data=self._payload(fr, values),
                    is_extended_id=fr.msg.is_extended_frame,
                )
            )
            if mode == "error_frames":
                self._send(
                    can.Message(
                        arbitration_id=CAN_ERR_CRTL, is_error_frame=True, dlc=8, data=bytes([0, 0x10, 0, 0, 0, 0, 0, 0])
                    )
                )
            elif mode == "garbage":
                self._garbage()

    def go_bus_off(self) -> None:
        """Send one bus-off error frame and fall silent (until ``fault`` is cleared)."""
        self.fault = "bus_off"
        self._send(can.Message(arbitration_id=CAN_ERR_BUSOFF, is_error_frame=True, dlc=8, data=bytes(8)))

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        kwargs = dict(self.bus_options)
        if self.bitrate is not None:
            kwargs.setdefault("bitrate", self.bitrate)
        if self.interface == "slcan":
            kwargs.setdefault("sleep_after_open", 0.0)
        self.bus = await asyncio.to_thread(can.Bus, interface=self.interface, channel=self.channel, **kwargs)

    async def stop(self) -> None:
        if self.bus is not None:
            bus, self.bus = self.bus, None
            try:
                bus.shutdown()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass

    def schedules(self) -> list[Schedule]:
        """The rig steps every feed tick; each frame goes out at its message's cycle time (frames of one period
        together). A late cycle sends once, not a burst."""
        by_period: dict[float, list[_Frame]] = {}
        for period, fr in self.frames:
            by_period.setdefault(period, []).append(fr)

        def sender(frames: list[_Frame]) -> Callable[[int], Awaitable[None]]:
            async def send(_ticks: int) -> None:
                if self.bus is not None:
                    self.send_cycle(frames)

            return send

        return [*super().schedules(), *((p, sender(frs)) for p, frs in sorted(by_period.items()))]
