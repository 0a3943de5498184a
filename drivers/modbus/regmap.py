"""A profile compiled for polling: the fewest read requests that cover it, and a vectorised decoder.

Registers of one poll are concatenated into one uint16 array; every value of the profile is a row of register
indices into it, grouped by (type, word order, byte order), so decoding a device is a handful of numpy
operations whatever its size. pymodbus frames the requests; its ``convert_from_registers`` knows word order but
not byte order (the "BADC" devices), hence numpy here - the tests cross-check both on every type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from drivers.base import FIELDS
from drivers.modbus.profile import FUNCTION_CODES, TYPES, ModbusProfile
from drivers.profiles import FIELD_INDEX, unit_conversion

FAULT, FAULT_BITMAP = 3, 4
_UNSIGNED = {"i16": "u16", "i32": "u32"}


@dataclass(frozen=True)
class Block:
    """One read request: function code 3 (holding) or 4 (input), first address, register count."""

    function_code: int
    address: int
    count: int


@dataclass
class Decoded:
    """What one poll said, as (n_cells, 3) arrays: values, which entries it refreshed, which were invalid."""

    values: np.ndarray
    mask: np.ndarray
    faults: np.ndarray
    cell_fault: np.ndarray  # (n_cells,) the device flags the cell
    cell_fault_mask: np.ndarray  # (n_cells,) cells whose fault bits this poll read


@dataclass
class _Group:
    dtype: str
    byte_little: bool
    idx: np.ndarray  # (m, words) indices into the poll's register array, in big-endian word order
    block: np.ndarray  # (m,) block of each value
    scale: np.ndarray
    offset: np.ndarray
    factor: np.ndarray
    unit_offset: np.ndarray
    kind: np.ndarray  # field index 0..2, FAULT or FAULT_BITMAP
    cell: np.ndarray  # 0-based first cell, -1 = all cells
    bits: np.ndarray  # cells covered by a fault bitmap
    na: np.ndarray  # (m, k) raw 'not available' values, NaN padded
    order: list[int] = field(default_factory=list)


def plan_blocks(spans: list[tuple[int, int, int]], max_count: int, max_gap: int) -> list[Block]:
    """Group (function code, address, registers) spans into as few reads as the limits allow; a value never
    straddles two reads."""
    blocks: list[Block] = []
    for fc in sorted({s[0] for s in spans}):
        run: tuple[int, int] | None = None  # (start, end) of the read being built
        for _, addr, width in sorted(s for s in spans if s[0] == fc):
            end = addr + width
            if run is not None and addr <= run[1] + max_gap and max(end, run[1]) - run[0] <= max_count:
                run = (run[0], max(run[1], end))
                continue
            if run is not None:
                blocks.append(Block(fc, run[0], run[1] - run[0]))
            run = (addr, end)
        if run is not None:
            blocks.append(Block(fc, run[0], run[1] - run[0]))
    return blocks


class RegisterMap:
    """The compiled profile: ``blocks`` to read, ``decode`` for what came back."""

    def __init__(self, profile: ModbusProfile):
        self.profile = profile
        self.n_cells = profile.cells
        rows = []  # one per value: (fc, address, type, word_little, byte_little, scale, offset, kind, cell, bits, na)
        for e in profile.registers:
            fc = FUNCTION_CODES[e.function or profile.function]
            wl = (e.word_order or profile.word_order) == "little"
            bl = (e.byte_order or profile.byte_order) == "little"
            width = TYPES[e.type][1]
            cell0 = -1 if e.cell == "all" else e.cell - 1
            if e.field == "fault_bitmap":
                rows.append(
                    (
                        fc,
                        e.address,
                        _UNSIGNED.get(e.type, e.type),
                        wl,
                        bl,
                        1.0,
                        0.0,
                        1.0,
                        0.0,
                        FAULT_BITMAP,
                        max(cell0, 0),
                        e.count,
                        e.na,
                    )
                )
                continue
            kind = FAULT if e.field == "fault" else FIELD_INDEX[e.field]
            factor, uoff = unit_conversion(e.unit, e.field) if kind != FAULT else (1.0, 0.0)
            for k in range(e.count):
                addr = e.address + k * (e.stride or width)
                rows.append(
                    (
                        fc,
                        addr,
                        e.type,
                        wl,
                        bl,
                        e.scale,
                        e.offset,
                        factor,
                        uoff,
                        kind,
                        cell0 if cell0 < 0 else cell0 + k,
                        0,
                        e.na,
                    )
                )
        self.blocks = plan_blocks(
            [(r[0], r[1], TYPES[r[2]][1]) for r in rows], profile.max_registers_per_read, profile.max_gap
        )
        self.block_base = np.cumsum([0] + [b.count for b in self.blocks])[:-1]
        self.n_registers = int(sum(b.count for b in self.blocks))
        self.n_values = len(rows)
        self.groups: list[_Group] = []
        keyed: dict[tuple[str, bool, bool], list[int]] = {}
        for i, r in enumerate(rows):
            keyed.setdefault((r[2], r[3], r[4]), []).append(i)
        for (typ, wl, bl), members in keyed.items():
            dtype, width = TYPES[typ]
            idx = np.empty((len(members), width), dtype=np.int64)
            blk = np.empty(len(members), dtype=np.int64)
            for j, i in enumerate(members):
                fc, addr = rows[i][0], rows[i][1]
                b = next(
                    k
                    for k, bl_ in enumerate(self.blocks)
                    if bl_.function_code == fc and bl_.address <= addr and addr + width <= bl_.address + bl_.count
                )
                blk[j] = b
                words = self.block_base[b] + (addr - self.blocks[b].address) + np.arange(width)
                idx[j] = words[::-1] if wl else words  # put the most significant word first
            n_na = max((len(rows[i][12]) for i in members), default=0)
            na = np.full((len(members), max(n_na, 1)), np.nan)
            for j, i in enumerate(members):
                na[j, : len(rows[i][12])] = rows[i][12]
            cols = [
                np.array([rows[i][k] for i in members], dtype=np.int64 if k >= 9 else np.float64) for k in range(5, 12)
            ]
            g_scale, g_offset, g_factor, g_uoff, g_kind, g_cell, g_bits = cols
            self.groups.append(
                _Group(dtype, bl, idx, blk, g_scale, g_offset, g_factor, g_uoff, g_kind, g_cell, g_bits, na)
            )

    def decode(self, regs: np.ndarray, ok: np.ndarray | None = None) -> Decoded:
        """Decode one poll: ``regs`` holds the blocks' registers back to back; ``ok[b]`` false = block b failed.

        Never raises on any register content: invalid numbers become NaN with a fault mark.
        """
        n = self.n_cells
        out = Decoded(
            np.full((n, len(FIELDS)), np.nan),
            np.zeros((n, len(FIELDS)), bool),
            np.zeros((n, len(FIELDS)), bool),
            np.zeros(n, bool),
            np.zeros(n, bool),
        )
        regs = np.asarray(regs, dtype=np.uint16).reshape(-1)
        if regs.shape[0] < self.n_registers:
            regs = np.concatenate([regs, np.zeros(self.n_registers - regs.shape[0], np.uint16)])
            ok = np.zeros(len(self.blocks), bool) if ok is None else ok  # short input: trust nothing missing
        ok_b = np.ones(len(self.blocks), bool) if ok is None else np.asarray(ok, bool)
        pack: list[tuple[np.ndarray, ...]] = []
        cells: list[tuple[np.ndarray, ...]] = []
        with np.errstate(all="ignore"):
            for g in self.groups:
                use = ok_b[g.block]
                if not use.any():
                    continue
                words = regs[g.idx[use]]
                if g.byte_little:
                    words = (words >> 8) | (words << 8)
                raw = np.ascontiguousarray(words.astype(">u2")).view(g.dtype).reshape(-1).astype(np.float64)
                na = (raw[:, None] == g.na[use]).any(axis=1)
                kind, cell = g.kind[use], g.cell[use]
                value = (raw * g.scale[use] + g.offset[use]) * g.factor[use] + g.unit_offset[use]
                bad = na | ~np.isfinite(value)
                value = np.where(bad, np.nan, value)
                is_val = kind < FAULT
                pack.append((cell[is_val], kind[is_val], value[is_val], bad[is_val]))
                is_fault = kind == FAULT
                cells.append(
                    (cell[is_fault], np.zeros(int(is_fault.sum()), np.int64), (raw[is_fault] != 0) | na[is_fault])
                )
                for j in np.flatnonzero(kind == FAULT_BITMAP):
                    nbits = int(g.bits[use][j])
                    if na[j]:
                        bits = np.ones(nbits, bool)
                    else:
                        bits = ((int(raw[j]) >> np.arange(nbits)) & 1).astype(bool)
                    cells.append((cell[j] + np.arange(nbits), np.ones(nbits, np.int64), bits))
        for cell, kind, value, bad in pack:  # pack-level values first, so per-cell values win
            allc = cell < 0
            for k, v, b in zip(kind[allc].tolist(), value[allc].tolist(), bad[allc].tolist()):
                out.values[:, k], out.mask[:, k], out.faults[:, k] = v, True, b
        for cell, kind, value, bad in pack:
            one = cell >= 0
            out.values[cell[one], kind[one]] = value[one]
            out.mask[cell[one], kind[one]] = True
            out.faults[cell[one], kind[one]] = bad[one]
        for cell, _, flag in cells:
            allc = cell < 0
            if allc.any():
                out.cell_fault[:] |= bool(flag[allc].any())
                out.cell_fault_mask[:] = True
            one = ~allc
            out.cell_fault[cell[one]] |= flag[one]
            out.cell_fault_mask[cell[one]] = True
        return out
