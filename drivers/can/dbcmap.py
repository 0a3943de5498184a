"""Frames to cell values: cantools decodes each frame by its DBC message, the profile's mapping places the signals.

``FrameDecoder.decode`` is the hot path (one call per frame, in the driver's reader thread): a dict lookup by
frame id, ``Message.decode`` from cantools (multiplexers included), and appends to flat lists that are applied
to the ``Freshness`` arrays in bulk. Nothing in a frame can make it raise: unknown ids are counted, frames that
cantools rejects (short, bad multiplexer index) are counted as corrupt.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drivers.can.profile import LoadedProfile, SignalMap
from drivers.profiles import FIELD_INDEX, ProfileError, unit_conversion
from drivers.stale import Freshness

FAULT, FAULT_BITMAP = 3, 4
EXTENDED = 1 << 31
OK, UNKNOWN, CORRUPT = 0, 1, 2


def frame_key(arbitration_id: int, is_extended: bool) -> int:
    return arbitration_id | EXTENDED if is_extended else arbitration_id


@dataclass(slots=True)
class Target:
    kind: int  # field index 0..2, FAULT or FAULT_BITMAP
    cell: int  # 0-based; -1 = all cells
    a: float  # value = decoded * a + b (profile scale/offset and unit conversion folded together)
    b: float
    bits: int = 0


@dataclass
class Updates:
    """What a run of frames said, waiting to be applied to the freshness arrays in one go."""

    cells: list[int] = field(default_factory=list)
    fields: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    broadcast: list[tuple[int, float]] = field(default_factory=list)  # (field, value) for every cell
    faults: list[tuple[int, int, int]] = field(default_factory=list)  # (first cell or -1, bits, raw)

    def __len__(self) -> int:
        return len(self.values) + len(self.broadcast) + len(self.faults)

    def apply(self, fresh: Freshness, ts_ms: int) -> None:
        n = fresh.n
        for f, v in self.broadcast:
            fresh.update_points(np.arange(n), np.full(n, f), np.full(n, v), ts_ms)
        if self.values:
            fresh.update_points(np.asarray(self.cells), np.asarray(self.fields), np.asarray(self.values, float), ts_ms)
        for first, bits, raw in self.faults:
            if first < 0:
                fresh.set_cell_faults(np.arange(n), np.full(n, raw != 0), ts_ms)
            else:
                cells = np.arange(first, min(first + bits, n))
                fresh.set_cell_faults(cells, ((raw >> (cells - first)) & 1).astype(bool), ts_ms)
        self.cells.clear()
        self.fields.clear()
        self.values.clear()
        self.broadcast.clear()
        self.faults.clear()


class FrameDecoder:
    def __init__(self, loaded: LoadedProfile):
        prof = loaded.profile
        self.n_cells = prof.cells
        self.by_key: dict[int, tuple[object, dict[str, Target]]] = {}
        stale = np.zeros((prof.cells, 3))
        used = [False] * len(prof.signals)
        for msg in loaded.db.messages:
            targets: dict[str, Target] = {}
            period = msg.cycle_time or 0
            for sig in msg.signals:
                for k, m in enumerate(prof.signals):
                    t = self._match(m, msg.name, sig, prof.cells, loaded)
                    if t is None:
                        continue
                    used[k] = True
                    targets[sig.name] = t
                    if t.kind < FAULT:
                        s_ms = m.stale_after_ms or (
                            prof.stale_cycles * period if period else prof.default_stale_after_ms
                        )
                        rows = slice(None) if t.cell < 0 else t.cell
                        stale[rows, t.kind] = np.maximum(stale[rows, t.kind], s_ms)
                    break
            if targets:
                self.by_key[frame_key(msg.frame_id, msg.is_extended_frame)] = (msg, targets)
        unused = [m.signal or m.pattern for k, m in enumerate(prof.signals) if not used[k]]
        if unused:
            raise ProfileError(f"{loaded.path}: mappings match no signal of {loaded.dbc_path.name}: {unused}")
        self.stale_after_ms = np.where(stale > 0, stale, prof.default_stale_after_ms)

    @staticmethod
    def _match(m: SignalMap, msg_name: str, sig: Any, n_cells: int, loaded: LoadedProfile) -> Target | None:
        if m.message is not None and m.message != msg_name:
            return None
        if m.signal is not None:
            if sig.name != m.signal:
                return None
            cell = -1 if m.cell == "all" else m.cell - 1
        else:
            hit = re.search(m.pattern or "", sig.name)
            if hit is None:
                return None
            try:
                cell = int(hit.group("cell")) + m.cell_offset - 1
            except (TypeError, ValueError):
                raise ProfileError(
                    f"{loaded.path}: pattern {m.pattern!r} matched {sig.name!r} but its 'cell' group is not a number"
                ) from None
        if cell >= n_cells or cell < -1:
            raise ProfileError(
                f"{loaded.path}: signal {sig.name} maps to cell {cell + 1}, the profile has 1..{n_cells}"
            )
        if m.field in ("fault", "fault_bitmap"):
            kind = FAULT if m.field == "fault" else FAULT_BITMAP
            return Target(kind, cell, 1.0, 0.0, m.count if kind == FAULT_BITMAP else 0)
        unit = m.unit if m.unit is not None else (sig.unit or "")
        try:
            factor, uoff = unit_conversion(unit, m.field)
        except ValueError as exc:
            raise ProfileError(f"{loaded.path}: signal {sig.name}: {exc}") from None
        return Target(FIELD_INDEX[m.field], cell, m.scale * factor, m.offset * factor + uoff)

    def decode(self, arbitration_id: int, is_extended: bool, data: bytes, out: Updates) -> int:
        """Decode one frame into ``out``; returns OK, UNKNOWN (id not mapped) or CORRUPT. Never raises."""
        entry = self.by_key.get(arbitration_id | EXTENDED if is_extended else arbitration_id)
        if entry is None:
            return UNKNOWN
        msg, targets = entry
        try:
            signals = msg.decode(data, decode_choices=False, scaling=True)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - cantools raises DecodeError, ValueError, struct/bitstruct errors
            return CORRUPT
        for name, value in signals.items():
            t = targets.get(name)
            if t is None:
                continue
            try:
                v = float(value)
            except (TypeError, ValueError):
                continue
            if t.kind < FAULT:
                v = v * t.a + t.b
                if t.cell < 0:
                    out.broadcast.append((t.kind, v))
                else:
                    out.cells.append(t.cell)
                    out.fields.append(t.kind)
                    out.values.append(v)
            else:
                raw = int(v) if math.isfinite(v) and abs(v) < 2**63 else 1  # NaN/huge: treat as "fault"
                if t.kind == FAULT_BITMAP:
                    out.faults.append((max(t.cell, 0), t.bits, raw))
                else:
                    out.faults.append((t.cell, 1, int(raw != 0)))
        return OK
