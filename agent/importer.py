"""``battery-twin import FILE... --cell ID``: historic cycler tests into the store, with their original timestamps.

Rows go in through the store's writer like a driver's batches (seq from the store, never reused), with their
origin: the store's ledger keeps the highest row committed per (cell, test identity) and drops the rest in the
same transaction, so importing a file twice, or a file the cycler driver already followed, adds nothing. Cycle
summaries come from the cycler's own cycle numbers (``agent/twin/filecycles.py``); only cycles that end past
what the ledger already held are added, so they are not repeated either.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.store import Store
from agent.twin.filecycles import summarise
from drivers.base import Event
from drivers.cycler.formats import FormatError
from drivers.cycler.readers import FORMAT_CHOICES, open_source
from drivers.cycler.states import flush
from drivers.cycler.text import zone

EXIT_BAD_INPUT = 2


@dataclass
class Imported:
    path: Path
    rows_read: int = 0
    rows_added: int = 0
    bad_rows: int = 0
    cycles_added: int = 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "import", help="backfill cycler files (Maccor, Neware, PEC, BDF, BioLogic, Arbin) into the store"
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--cell", required=True, help="cell id the rows belong to")
    p.add_argument("--format", default="auto", choices=FORMAT_CHOICES)
    p.add_argument("--tz", default=None, help="zone of the cycler's clock, e.g. Europe/Oslo (files with local time)")
    p.add_argument("--start", default=None, help="test start (ISO 8601) for files without a wall clock (BDF)")
    p.add_argument("--config", "-c", default=None, help="agent config (for the store path); default config if none")
    p.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from agent.commands import EXIT_CONFIG, _config_path
    from agent.config import ConfigError, load_config

    try:
        cfg = load_config(_config_path(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    try:
        tz = args.tz or "UTC"
        zone(tz)
        start_ms = _parse_start(args.start, tz) if args.start else None
    except ValueError as exc:
        print(f"battery-twin import: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    store = Store.open(cfg.store.path, cfg.store.synchronous, cfg.store.max_bytes)
    status = 0
    try:
        for path in args.files:
            try:
                done = import_file(store, path, args.cell, args.format, tz, start_ms, tz_given=args.tz is not None)
            except (FormatError, OSError) as exc:
                print(f"{path}: not imported: {exc}", file=sys.stderr)
                store.append_events([Event("import.failed", f"{path}: {exc}"[:500], source="import", cell=args.cell)])
                status = EXIT_BAD_INPUT
                continue
            print(
                f"{path}: {done.rows_read} rows read, {done.rows_added} added, {done.rows_read - done.rows_added - done.bad_rows}"
                f" already stored, {done.bad_rows} unreadable; {done.cycles_added} cycle summaries added"
            )
    finally:
        store.close()
    return status


def _parse_start(text: str, tz: str) -> int:
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone(tz))
    return int(when.timestamp() * 1000)


def import_file(
    store: Store,
    path: Path,
    cell: str,
    fmt: str = "auto",
    tz: str = "UTC",
    start_ms: int | None = None,
    tz_given: bool = True,
) -> Imported:
    """Import one file into ``store``; FormatError/OSError when it cannot be read at all."""
    source = open_source(path, cell, fmt, tz, start_ms)
    done = Imported(path)
    cells = (cell,)
    cycle_parts: list[tuple[np.ndarray, ...]] = []
    held: int | None = None
    while True:
        parsed, progress = source.poll(final=True)
        if parsed is None:
            break
        if held is None:
            held = _ledger_last_row(store, source.key)
        done.rows_read += len(parsed)
        done.bad_rows += len(progress.bad_rows)
        events = []
        if progress.bad_rows:
            events.append(_bad_rows_event(path, cell, progress.bad_rows))
        events += [Event(n.kind, n.message[:1000], source="import", cell=cell, data=n.data) for n in progress.notes]
        if not tz_given and source.has_wallclock:
            tz_given = True  # said once per file
            events.append(Event("import.assumed_utc", f"{path}: local times read as UTC (no --tz)", source="import"))
        first, last = store.append(source.batch(parsed, cells, 0), f"import:{path.name}", events)
        done.rows_added += last - first + 1 if last else 0
        cycle_parts.append(
            (
                parsed.row,
                parsed.cycle_no,
                parsed.ts_ms,
                parsed.current_a,
                parsed.voltage_v,
                parsed.temperature_c,
                parsed.step_no,
            )
        )
        if source.finished:
            break
    held_notes = flush(path.name, source.tally)  # findings held back below the reporting threshold
    if held_notes:
        store.append_events(
            [Event(n.kind, n.message[:1000], source="import", cell=cell, data=n.data) for n in held_notes]
        )
    if cycle_parts:
        row, cyc, ts, i, v, t, stp = (np.concatenate(c) for c in zip(*cycle_parts))
        summaries = summarise(cell, cyc, ts, i, v, t, stp)
        ends = _cycle_end_rows(row, cyc)
        new = [s for s, end in zip(summaries, ends) if held is None or end > held]
        if new:
            store.append_cycles(new)
        done.cycles_added = len(new)
    return done


def _ledger_last_row(store: Store, key: str) -> int | None:
    got = store.conn.execute("SELECT last_row FROM import_ledger WHERE key=?", (key,)).fetchone()
    return None if got is None else int(got[0])


def _cycle_end_rows(row: np.ndarray, cyc: np.ndarray) -> list[int]:
    """Row number of each complete cycle's last row, in summarise's order (cycles with a number)."""
    if not len(cyc):
        return []
    starts = np.flatnonzero(np.r_[True, cyc[1:] != cyc[:-1]])
    ends = np.r_[starts[1:], len(cyc)] - 1
    return [int(row[e]) for s, e in zip(starts[:-1], ends[:-1]) if cyc[s] >= 0]


def _bad_rows_event(path: Path, cell: str, bad: list[int]) -> Event:
    data: dict[str, Any] = {"file": str(path), "count": len(bad), "rows": bad[:20]}
    msg = f"{path.name}: {len(bad)} line(s) not readable, skipped (first data rows {bad[:5]})"
    return Event("import.bad_rows", msg, source="import", cell=cell, data=data)
