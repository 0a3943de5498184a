"""Text exports read column-wise: the csv module splits lines (in C), numpy converts whole columns at once.

``Header.read`` finds the format's header line, the byte offset where data begins, the file's identity (a hash of
the header and the first data line: stable while the file grows, different for another test) and the time
anchor (the first row's local wall clock in the configured zone, or a configured start). ``parse`` turns a list
of complete data lines into columns in the contract's units; a line that does not parse (garbage, a changed
column count) is counted and skipped, never guessed. Row numbers count data lines from the top of the file, so a
row has the same number whether the file is followed live or imported later.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from drivers.cycler.formats import FORMATS, FormatError, TextFormat, detect, find_header

Column = Callable[[str], list[str]]  # a column's strings by name
HEAD_BYTES = 1 << 16  # the header and first data line must fit in this much
_SCALE = {"s": (1.0,), "h": (3600.0,), "hms": (3600.0, 60.0, 1.0), "dhms": (86400.0, 3600.0, 60.0, 1.0)}


@dataclass
class Parsed:
    """Columns of the rows that parsed, with their row numbers; ``bad`` lists the row numbers that did not."""

    row: np.ndarray
    ts_ms: np.ndarray
    voltage_v: np.ndarray
    current_a: np.ndarray
    temperature_c: np.ndarray
    cycle_no: np.ndarray
    step_no: np.ndarray
    discharge_ah: np.ndarray
    bad: list[int] = field(default_factory=list)
    codes: list[str] | None = None  # the cycler's state/step-type code per row, where the format maps them
    fault: np.ndarray | None = None  # bool per row: the cycler marked the row as an error (BioLogic's flag)

    def __len__(self) -> int:
        return int(self.row.shape[0])

    def select(self, mask: np.ndarray) -> Parsed:
        return Parsed(
            self.row[mask],
            self.ts_ms[mask],
            self.voltage_v[mask],
            self.current_a[mask],
            self.temperature_c[mask],
            self.cycle_no[mask],
            self.step_no[mask],
            self.discharge_ah[mask],
            list(self.bad),
            None if self.codes is None else np.asarray(self.codes, dtype=str)[mask].tolist(),
            None if self.fault is None else self.fault[mask],
        )


@dataclass
class Hierarchy:
    """Neware's regular export: the cycle and step in force, carried from one chunk of lines to the next."""

    cycle: int = -1
    step: int = -1


@dataclass
class Header:
    fmt: TextFormat
    names: list[str]
    data_offset: int  # byte offset of the first data line
    identity: str  # sha256 of the header and first data line
    anchor_ms: int  # UTC ms of the first data row
    elapsed0_s: float  # its elapsed time
    index: dict[str, int]

    @classmethod
    def read(cls, head: bytes, fmt_name: str = "auto", tz: str = "UTC", start_ms: int | None = None) -> Header:
        """Parse the file's head (its first ``HEAD_BYTES``). FormatError when it is not the format or incomplete.

        Raises ``IncompleteHead`` while the first data line has not been written yet (follow mode waits)."""
        text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
        lines = text.split("\n")
        complete = lines[:-1]  # the last element is a half line (or empty)
        if fmt_name == "auto":
            fmt, idx = detect(complete or lines)
        else:
            if fmt_name not in FORMATS:
                raise FormatError(f"unknown text format {fmt_name!r}; known: {', '.join(FORMATS)}")
            fmt = FORMATS[fmt_name]
            idx = find_header(complete or lines, fmt)
        first = _first_data_line(complete, idx + 1, fmt)
        if first is None:
            raise IncompleteHead("no complete data line yet")
        names = next(csv.reader([lines[idx].rstrip("\r")], delimiter=fmt.delimiter))
        index = {n.strip(): k for k, n in enumerate(names)}
        missing = [c for c in fmt.columns() if c not in index]
        if missing:
            raise FormatError(f"{fmt.name} header lacks column(s) {', '.join(map(repr, missing))}")
        data_offset = len("\n".join(lines[: idx + 1]).encode("utf-8", errors="replace")) + 1
        identity = hashlib.sha256("\n".join(lines[: first + 1]).encode("utf-8", errors="replace")).hexdigest()
        row = next(csv.reader([complete[first].rstrip("\r")], delimiter=fmt.delimiter))
        try:
            elapsed0 = float(_elapsed_s([row[index[fmt.elapsed[0]]]], fmt.elapsed[1])[0])
        except (ValueError, IndexError) as exc:
            raise FormatError(f"first data line has no readable {fmt.elapsed[0]!r}: {exc}") from None
        if fmt.wallclock:
            anchor = _wallclock_ms(row[index[fmt.wallclock]].strip(), fmt.wallclock_formats, tz)
        elif "Unix Time / s" in index:
            anchor = round(float(row[index["Unix Time / s"]]) * 1000)
        elif start_ms is not None:
            anchor = start_ms
        else:
            raise FormatError(f"{fmt.name} files carry no wall clock: give the test's start (--start / start)")
        return cls(fmt, names, data_offset, identity, anchor, elapsed0, index)

    def parse(self, lines: list[str], first_row: int, hierarchy: Hierarchy | None = None) -> Parsed:
        """Complete data lines (no newline) numbered from ``first_row``: columns in the contract's units."""
        fmt = self.fmt
        need = max(self.index[c] for c in fmt.columns()) + 1
        if not fmt.hierarchical and len(self.names) <= 2 * need:  # narrow rows: one split, columns as slices
            flat = self._flat(lines)
            if flat is not None:
                try:
                    rows_n = np.arange(first_row, first_row + len(lines), dtype=np.int64)
                    return self._columns(flat, len(lines), rows_n, [], None, None)
                except ValueError:
                    pass  # garbage somewhere in the chunk: the row by row path below finds it
        # wide rows (Maccor: 61 fields, 12 used) are split per line only as far as the last column used
        rows = _split(lines, fmt.delimiter, need)
        rownum = np.arange(first_row, first_row + len(rows), dtype=np.int64)
        cyc_h = stp_h = None
        if fmt.hierarchical:
            rows, rownum, cyc_h, stp_h = _flatten(rows, rownum, hierarchy or Hierarchy())
        ok = np.fromiter((len(r) >= need for r in rows), dtype=bool, count=len(rows))
        if not ok.all():
            blank = np.fromiter((r == [""] or not r for r in rows), dtype=bool, count=len(rows))
            bad = rownum[~ok & ~blank].tolist()  # an empty line is nothing to read, not garbage
            rows = [r for r, good in zip(rows, ok) if good]
            rownum = rownum[ok]
            if cyc_h is not None and stp_h is not None:
                cyc_h, stp_h = cyc_h[ok], stp_h[ok]
        else:
            bad = []
        try:
            return self._columns(self._getter(rows), len(rows), rownum, bad, cyc_h, stp_h)
        except ValueError:  # the slow path, only for a chunk with garbage in it: find the rows that do not parse
            good = np.fromiter((self._row_ok(r) for r in rows), dtype=bool, count=len(rows))
            bad = sorted(bad + rownum[~good].tolist())
            rows = [r for r, g in zip(rows, good) if g]
            if cyc_h is not None and stp_h is not None:
                cyc_h, stp_h = cyc_h[good], stp_h[good]
            return self._columns(self._getter(rows), len(rows), rownum[good], bad, cyc_h, stp_h)

    def _flat(self, lines: list[str]) -> Column | None:
        """Columns as slices of one split of the chunk, when every line has exactly the header's field count."""
        delim, ncols = self.fmt.delimiter, len(self.names)
        joined = delim.join(lines)
        if '"' in joined:
            return None
        flat = joined.split(delim)
        if len(flat) != len(lines) * ncols:
            return None
        return lambda name: flat[self.index[name] :: ncols]

    def _getter(self, rows: list[list[str]]) -> Column:
        return lambda name: list(map(itemgetter(self.index[name]), rows))

    def _row_ok(self, row: list[str]) -> bool:
        try:
            self._columns(self._getter([row]), 1, np.zeros(1, np.int64), [], None, None)
            return True
        except ValueError:
            return False

    @staticmethod
    def _num(get: Column, n: int, name: str | None, blank_ok: bool = False) -> np.ndarray:
        if name is None:
            return np.full(n, np.nan)
        col = get(name)
        try:
            return np.fromiter(map(float, col), dtype=np.float64, count=n)
        except ValueError:
            if not blank_ok:
                raise
            return np.fromiter(map(_float_or_nan, col), dtype=np.float64, count=n)

    def _columns(
        self,
        get: Column,
        n: int,
        rownum: np.ndarray,
        bad: list[int],
        cyc_h: np.ndarray | None,
        stp_h: np.ndarray | None,
    ) -> Parsed:
        fmt, num = self.fmt, self._num
        elapsed = _elapsed_s(get(fmt.elapsed[0]), fmt.elapsed[1])
        ts_ms = self.anchor_ms + np.round((elapsed - self.elapsed0_s) * 1000.0).astype(np.int64)
        voltage = num(get, n, fmt.voltage[0]) * fmt.voltage[1]
        current = num(get, n, fmt.current[0]) * fmt.current[1]
        if fmt.state:
            state = np.char.strip(np.asarray(get(fmt.state) or [""])[:n])
            current = np.where(state == "D", -np.abs(current), np.where(state == "C", np.abs(current), current))
        current = current + 0.0  # no -0.0 from a sign flip
        temp = num(get, n, fmt.temperature, blank_ok=True)
        cyc = cyc_h if cyc_h is not None else _ints(num(get, n, fmt.cycle) if fmt.cycle else None, n)
        stp = stp_h if stp_h is not None else _ints(num(get, n, fmt.step) if fmt.step else None, n)
        qd = num(get, n, fmt.discharge_ah[0], blank_ok=True) * fmt.discharge_ah[1] if fmt.discharge_ah else None
        codes = get(fmt.phase_column)[:n] if fmt.phase_column else None
        return Parsed(
            rownum, ts_ms, voltage, current, temp, cyc, stp, qd if qd is not None else np.full(n, np.nan), bad, codes
        )


def _float_or_nan(text: str) -> float:
    return float(text) if text.strip() else float("nan")


def _split(lines: list[str], delimiter: str, need: int) -> list[list[str]]:
    """Fields of each line, split only as far as the last column used. Quoted fields go through csv."""
    if any('"' in line for line in lines):
        return [r[: need + 1] for r in csv.reader(lines, delimiter=delimiter)]
    return [line.rstrip("\r").split(delimiter, need) for line in lines]


class IncompleteHead(FormatError):
    """The file has no complete first data line yet: follow mode waits for it."""


def _ints(values: np.ndarray | None, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, -1, dtype=np.int32)
    if not np.isfinite(values).all():
        raise ValueError("cycle/step number not a number")
    return values.astype(np.int32)


def _first_data_line(lines: list[str], start: int, fmt: TextFormat) -> int | None:
    for k in range(start, len(lines)):
        line = lines[k].rstrip("\r")
        if fmt.hierarchical and not line.startswith(",,"):
            continue
        if line.strip():
            return k
    return None


def _elapsed_s(col: list[str], unit: str) -> np.ndarray:
    """Elapsed time in seconds from a column of strings: seconds, hours, ``h:mm:ss`` or ``Nd hh:mm:ss``."""
    weights = _SCALE[unit]
    n = len(col)
    if len(weights) == 1:
        seconds: np.ndarray = np.fromiter(map(float, col), dtype=np.float64, count=n) * weights[0]
        return seconds
    text = ":".join(col)
    if unit == "dhms":
        text = text.replace("d", ":")
    parts = text.split(":") if n else []
    if len(parts) != n * len(weights):
        raise ValueError(f"elapsed time not in {unit} form")
    values = np.fromiter(map(float, parts), dtype=np.float64, count=len(parts))
    total: np.ndarray = values.reshape(n, len(weights)) @ np.asarray(weights)
    return total


def zone(name: str) -> ZoneInfo:
    """The zone named ``name``; ValueError (not ModuleNotFoundError without tzdata) when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ModuleNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Oslo)") from None


def _wallclock_ms(text: str, formats: tuple[str, ...], tz: str) -> int:
    for f in formats:
        try:
            local = dt.datetime.strptime(text, f)
        except ValueError:
            continue
        return int(local.replace(tzinfo=zone(tz)).timestamp() * 1000)
    raise FormatError(f"wall clock {text!r} is in none of the formats {formats}")


def _flatten(
    rows: list[list[str]], rownum: np.ndarray, h: Hierarchy
) -> tuple[list[list[str]], np.ndarray, np.ndarray, np.ndarray]:
    """Neware's regular export: keep the record rows (``,,``), giving each the cycle and step rows above it."""
    cyc = np.full(len(rows), -1, dtype=np.int64)
    stp = np.full(len(rows), -1, dtype=np.int64)
    for k, r in enumerate(rows):  # one pass over the few cycle/step rows' markers; values set below
        if not r or (r[0] == "" and len(r) > 1 and r[1] == ""):
            continue
        try:
            if r[0] != "":
                cyc[k] = int(r[0])
                if len(r) > 9 and r[9]:
                    stp[k] = int(r[9])
            elif len(r) > 2:
                stp[k] = int(r[2])
        except ValueError:
            continue
    is_data = np.fromiter((len(r) > 2 and r[0] == "" and r[1] == "" for r in rows), dtype=bool, count=len(rows))
    cyc_f = _ffill(cyc, h.cycle)
    stp_f = _ffill(stp, h.step)
    if len(rows):
        h.cycle, h.step = int(cyc_f[-1]), int(stp_f[-1])
    keep = np.flatnonzero(is_data)
    get = itemgetter(*keep.tolist()) if keep.size > 1 else None
    data = list(get(rows)) if get else [rows[int(k)] for k in keep]
    # data rows are numbered by their line, so a record keeps its number however the file is split into chunks
    return data, rownum[keep], cyc_f[keep].astype(np.int32), stp_f[keep].astype(np.int32)


def _ffill(values: np.ndarray, initial: int) -> np.ndarray:
    idx = np.where(values >= 0, np.arange(values.shape[0]), -1)
    np.maximum.accumulate(idx, out=idx)
    return np.where(idx >= 0, values[np.maximum(idx, 0)], initial)
