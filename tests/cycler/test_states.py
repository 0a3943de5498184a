"""The cycler's own step codes against the current's sign (drivers/cycler/states.py), on the real files: the
shipped maps agree with every judged row of every file that has codes, an inverted sign is named as such, and a
file with contradicting rows and unknown codes gets events with the rows, its rows all stored."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from agent.importer import import_file
from agent.store import Store
from drivers.base import Flag
from drivers.cycler.formats import FORMATS
from drivers.cycler.native import NATIVE_PHASES
from drivers.cycler.readers import open_source
from drivers.cycler.states import REPORT_ROWS, Tally, check, notes_for, phases
from drivers.cycler.text import Parsed

DATA = Path("/work/shared/data/cyclers")
CODED = [  # file, format, zone, start, codes seen (golden: the file's own vocabulary)
    ("maccor_001.txt", "maccor", "Europe/London", None, {"C", "D", "R", "O"}),
    ("neware_uio.csv", "neware", "Asia/Shanghai", None, {"CC Chg", "CC DChg", "Rest"}),
    ("batmo_bdf.csv", "bdf", "UTC", 1_600_000_000_000, {"charge", "discharge", "rest"}),
]


def _all(name: str, tz: str, start: int | None) -> tuple[Parsed, list]:
    src = open_source(DATA / name, "c", "auto", tz, start)
    parsed, progress = src.poll(final=True)
    assert parsed is not None and src.poll(final=True)[0] is None, f"{name}: expected one chunk"
    return parsed, progress.notes


@pytest.mark.parametrize("name,fmt,tz,start,codes", CODED)
def test_real_files_agree_with_their_step_codes(name, fmt, tz, start, codes):
    parsed, notes = _all(name, tz, start)
    assert parsed.codes is not None and {c.strip() for c in parsed.codes} == codes
    assert notes == []  # every charge row charges, every discharge row discharges, every code known
    ph = phases(parsed.codes, FORMATS[fmt].phases)
    judged = (ph == 1) | (ph == -1)
    assert judged.sum() > 1000  # the check had something to judge


@pytest.mark.parametrize("name,fmt,tz,start,codes", CODED[1:])
def test_an_inverted_sign_is_named(name, fmt, tz, start, codes):
    parsed, _ = _all(name, tz, start)
    notes = check(name, phases(parsed.codes, FORMATS[fmt].phases), -parsed.current_a, parsed.row, parsed.codes, Tally())
    assert [n.kind for n in notes] == ["cycler.sign_mismatch"]
    assert notes[0].data["inverted"] is True and notes[0].data["count"] > 1000


def test_contradicting_rows_and_unknown_codes_raise_events_and_lose_nothing(tmp_path):
    lines = (DATA / "neware_uio.csv").read_text(encoding="utf-8-sig").splitlines()
    dis = [k for k, line in enumerate(lines) if ",CC DChg," in line][100:103]
    for k in dis:  # the cycler says charge while the current discharges
        lines[k] = lines[k].replace(",CC DChg,", ",CC Chg,")
    odd = [k for k, line in enumerate(lines) if ",Rest," in line][5:8]
    for k in odd:
        lines[k] = lines[k].replace(",Rest,", ",Mystery Step,")
    f = tmp_path / "neware_edit.csv"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    store = Store.open(tmp_path / "store.db", synchronous="NORMAL")
    try:
        done = import_file(store, f, "cell-x", "auto", "Asia/Shanghai")
        assert done.rows_added == 9065
        got = {
            kind: data for kind, data in store.conn.execute("SELECT kind, data FROM events WHERE kind LIKE 'cycler.%'")
        }
    finally:
        store.close()
    assert set(got) == {"cycler.sign_mismatch", "cycler.unknown_state"}
    mismatch, unknown = json.loads(got["cycler.sign_mismatch"]), json.loads(got["cycler.unknown_state"])
    assert mismatch["rows"] == [k - 1 for k in dis] and mismatch["inverted"] is False
    assert unknown["codes"] == ["Mystery Step"]
    assert np.all(np.asarray(mismatch["rows"]) >= 0)


def test_neware_ndax_status_codes_are_known_and_agree():
    src = open_source(DATA / "20260302_IFE_BTS85_2_9_8_1.ndax", "c", "auto", "UTC")
    parsed, progress = src.poll(final=True)
    assert parsed is not None and parsed.codes is not None
    assert set(parsed.codes) == {"Control", "CC_Chg", "CV_Chg"}
    assert progress.notes == []
    assert (phases(parsed.codes, NATIVE_PHASES["neware_nda"]) == 1).sum() == 249_350  # CC_Chg + CV_Chg rows


def test_biologic_error_bit_flags_the_row_and_raises_an_event():
    """EC-Lab's per-point error bit (galvani's ``error`` flag): none in the sample, so three rows are marked as
    the bit would mark them; their readings carry SENSOR_FAULT and one event lists them."""
    src = open_source(DATA / "biol.mpr", "c", "auto", "Europe/Oslo")
    parsed, progress = src.poll(final=True)
    assert parsed is not None and parsed.fault is not None and not parsed.fault.any() and progress.notes == []
    fault = parsed.fault.copy()
    fault[[10, 500, 9000]] = True
    marked = dataclasses.replace(parsed, fault=fault)
    notes = notes_for("biol.mpr", marked, {}, Tally())
    assert [(n.kind, n.data["rows"]) for n in notes] == [("cycler.vendor_fault", [10, 500, 9000])]
    batch = src.batch(marked, ("c",), 0)
    assert np.flatnonzero(batch.flags & Flag.SENSOR_FAULT).tolist() == [10, 500, 9000]


def test_a_live_file_that_keeps_disagreeing_raises_an_event_per_thousand_rows_not_per_poll():
    """Follow mode polls every second: an inverted file is named at once, then once per REPORT_ROWS rows."""
    parsed, _ = _all("neware_uio.csv", "Asia/Shanghai", None)
    ph = phases(parsed.codes, FORMATS["neware"].phases)
    tally, kinds, counts = Tally(), [], []
    for a in range(0, len(parsed), 10):  # polls of 10 rows
        s = slice(a, a + 10)
        for n in check("f", ph[s], -parsed.current_a[s], parsed.row[s], parsed.codes[s], tally):
            kinds.append(n.kind)
            counts.append(n.data["count"])
    wrong = int(sum(counts))
    assert kinds and set(kinds) == {"cycler.sign_mismatch"}
    assert len(kinds) <= 1 + wrong // REPORT_ROWS + 1 and len(kinds) < 20  # not one per poll (906 polls)
    held = tally.held.get("cycler.sign_mismatch", {"count": 0})["count"]
    assert wrong + held > 8000  # every mismatching row counted, reported or still held
