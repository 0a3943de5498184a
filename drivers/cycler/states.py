"""The cycler's own word on each row (Maccor's state letter, Neware's and BDF's step type) against the current.

A cycler knows whether it was charging, discharging or resting; the current column says so again by its sign
once mapped to the contract (charge positive). When the two disagree the row is suspect: a few rows at a step
change are the cycler's sampling; a whole file disagreeing means the format's sign is wrong for that file (the
BDF sample writes discharge positive, and a lab's own export may differ from the one the map was written for).
Each format's ``phases`` table in formats.toml maps the vendor's codes to charge / discharge / rest / other; a
code it does not list is reported once per file, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drivers.cycler.text import Parsed

PHASES = {"charge": 1, "discharge": -1, "rest": 0, "other": 2}
UNKNOWN = -9  # a code the format's table does not list (or no code column)
SIGN_TOLERANCE = 0.01  # of the batch's largest |current|: rows nearer zero than this are not judged
INVERTED_SHARE = 0.5  # more of the judged rows than this disagree: the file's current sign is inverted


@dataclass
class Note:
    """Something a batch's rows say that a lab should hear about: an event kind, its message and data."""

    kind: str
    message: str
    data: dict[str, Any]


def phases(codes: list[str], table: dict[str, str]) -> np.ndarray:
    """Per row: +1 charge, -1 discharge, 0 rest, 2 other, UNKNOWN; one dict lookup per distinct code."""
    arr = np.asarray(codes, dtype=str)
    uniq, inv = np.unique(np.char.strip(arr), return_inverse=True)
    lut = np.array([PHASES.get(table.get(str(u), ""), UNKNOWN) for u in uniq], dtype=np.int8)
    out: np.ndarray = lut[inv].reshape(-1) if uniq.size else np.zeros(0, dtype=np.int8)
    return out


REPORT_ROWS = 1000  # after a file's first report of a kind, the next comes when this many more rows are held


@dataclass
class Tally:
    """Per file: codes already named, and rows held back since the last report of each kind, so that a live file
    that keeps disagreeing raises an event per ``REPORT_ROWS`` rows (or when it turns inverted), not per poll."""

    codes: set[str] = field(default_factory=set)
    held: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> count, judged, rows, inverted
    reported: set[str] = field(default_factory=set)

    def add(self, kind: str, count: int, rows: list[int], judged: int = 0, inverted: bool = False) -> bool:
        """Hold a batch's findings; True when a report is due."""
        h = self.held.setdefault(kind, {"count": 0, "judged": 0, "rows": [], "inverted": inverted})
        flipped = h["inverted"] != inverted
        h["count"] += count
        h["judged"] += judged
        h["rows"] = (h["rows"] + rows)[:20]
        h["inverted"] = inverted
        return kind not in self.reported or flipped or h["count"] >= REPORT_ROWS

    def take(self, kind: str) -> dict[str, Any]:
        self.reported.add(kind)
        return self.held.pop(kind)


def notes_for(name: str, parsed: Parsed, table: dict[str, str], tally: Tally) -> list[Note]:
    """Everything a batch's vendor codes say: the cycler's own fault marks, then the step codes' check."""
    notes: list[Note] = []
    if parsed.fault is not None and parsed.fault.any():
        n = int(parsed.fault.sum())
        if tally.add("cycler.vendor_fault", n, parsed.row[parsed.fault][:20].tolist()):
            notes.append(_fault_note(name, tally.take("cycler.vendor_fault")))
    if parsed.codes is not None and len(parsed) and table:
        phase = phases(parsed.codes, table)
        notes += check(name, phase, parsed.current_a, parsed.row, parsed.codes, tally)
    return notes


def flush(name: str, tally: Tally) -> list[Note]:
    """What is still held (an import's end): reported now."""
    build = {"cycler.vendor_fault": _fault_note, "cycler.sign_mismatch": _sign_note}
    return [build[kind](name, tally.take(kind)) for kind in list(tally.held) if kind in build]


def check(
    name: str, phase: np.ndarray, current_a: np.ndarray, row: np.ndarray, codes: list[str], tally: Tally
) -> list[Note]:
    """Notes for one batch of one file: rows whose current's sign contradicts the cycler's step, codes the
    format does not know (each once per file)."""
    notes: list[Note] = []
    unknown = phase == UNKNOWN
    if unknown.any():
        seen = {str(c).strip() for c in np.unique(np.asarray(codes, dtype=str)[unknown])}
        new = sorted(seen - tally.codes)[:20]
        if new:
            tally.codes.update(new)
            msg = f"{name}: step codes {new} are not in the format's table: their rows are not checked"
            notes.append(Note("cycler.unknown_state", msg, {"file": name, "codes": new}))
    i = np.nan_to_num(current_a)
    tol = SIGN_TOLERANCE * float(np.max(np.abs(i))) if i.size else 0.0
    judged = ((phase == 1) | (phase == -1)) & (np.abs(i) > tol)
    wrong = judged & (np.sign(i) != phase)
    n_wrong, n_judged = int(wrong.sum()), int(judged.sum())
    if n_wrong:
        inverted = n_wrong > INVERTED_SHARE * n_judged
        if tally.add("cycler.sign_mismatch", n_wrong, row[wrong][:20].tolist(), n_judged, inverted):
            notes.append(_sign_note(name, tally.take("cycler.sign_mismatch")))
    return notes


def _fault_note(name: str, h: dict[str, Any]) -> Note:
    rows = h["rows"]
    msg = f"{name}: the cycler marked {h['count']} row(s) as errors (flagged SENSOR_FAULT; rows {rows[:5]})"
    return Note("cycler.vendor_fault", msg, {"file": name, "count": h["count"], "rows": rows})


def _sign_note(name: str, h: dict[str, Any]) -> Note:
    why = (
        "the current's sign is inverted against the cycler's own step types: check the format's current scale"
        if h["inverted"]
        else "the current's sign contradicts the cycler's step"
    )
    msg = f"{name}: {h['count']} of {h['judged']} charge/discharge rows: {why} (rows {h['rows'][:5]})"
    return Note("cycler.sign_mismatch", msg, {"file": name, **h})
