"""Native files through the field's readers (galvani, NewareNDA, mdbtools), and ``battery-twin import`` into a real
store: idempotent (twice adds nothing), with cycle summaries once; bad input gives a clear error and an event."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.importer import import_file
from agent.store import Store
from agent.twin.filecycles import summarise
from drivers.cycler.formats import FormatError
from drivers.cycler.readers import open_source
from tests.cycler.test_golden import DATA, check_row

NAN = float("nan")
RES = "20160805_test001_45_cc_01.res"
NDAX = "20260302_IFE_BTS85_2_9_8_1.ndax"

NATIVE = [
    # start 2017-03-15 10:22:54 Paris (UTC+1) in the .mpr header; Ewe 0.12348722 V; I/mA 0; Ns 0 -> 11
    ("biol.mpr", "Europe/Paris", 23561,
     (1489569774000, 0.12348721921443939, 0.0, NAN, 0, 0), (1489645913104, 0.5515370965003967, 0.0, NAN, 0, 11)),
    # NewareNDA gives UTC stamps (2026-02-27 10:17:33.977Z); the file's T1 is all zero: no sensor, NaN
    (NDAX, "UTC", 252951,
     (1772187453977, 0.20695459842681885, 0.0, NAN, 1, 1), (1772440388008, 4.748331069946289, 0.0019355652332305909, NAN, 1, 5)),
    # Start_DateTime 42587.67804398148 OLE days = 2016-08-05 16:16:23 Los Angeles (UTC-7), first Test_Time 300.01 s
    (RES, "America/Los_Angeles", 10261,
     (1470439283010, 3.0976174, 0.0, NAN, 1, 1), (1471298060241, 0.2940689, -0.00030420697, NAN, 18, 10)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "tz", "rows", "first", "last"), NATIVE, ids=[n[0] for n in NATIVE])
def test_native_file_golden(name, tz, rows, first, last):
    assert shutil.which("mdb-export"), "mdbtools (apt) is needed for Arbin .res files: make system-deps"
    src = open_source(DATA / name, "cell-1", "auto", tz)
    p, _ = src.poll()
    assert p is not None and len(p) == rows
    check_row(p, 0, first)
    check_row(p, -1, last)
    again, _ = src.poll()
    assert again is None, "an unchanged native file gives nothing new"


def test_arbin_discharge_capacity_per_cycle_within_half_a_percent():
    p, _ = open_source(DATA / RES, "c", "arbin", "UTC").poll()
    assert p is not None
    cycles = summarise("c", p.cycle_no, p.ts_ms, p.current_a, p.voltage_v, p.temperature_c, p.step_no, True)
    checked = 0
    for cy in cycles:
        want = float(np.nanmax(p.discharge_ah[p.cycle_no == cy["cycle"]]))  # Arbin: cumulative within the cycle
        if want > 0:
            assert cy["discharge_ah"] == pytest.approx(want, rel=0.005)
            checked += 1
    assert checked >= 10


def _store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store.db", synchronous="NORMAL")


def _counts(store: Store) -> tuple[int, int, int]:
    c = store.conn
    return (
        c.execute("SELECT count(*) FROM readings").fetchone()[0],
        c.execute("SELECT count(*) FROM cycles").fetchone()[0],
        c.execute("SELECT coalesce(max(seq), 0) FROM readings").fetchone()[0],
    )


@pytest.mark.parametrize(("name", "tz"), [("pec.csv", "America/Denver"), (RES, "America/Los_Angeles")])
def test_import_twice_adds_nothing(tmp_path, name, tz):
    store = _store(tmp_path)
    first = import_file(store, DATA / name, "cell-7", "auto", tz)
    after_first = _counts(store)
    assert first.rows_added == first.rows_read == after_first[0] and after_first[1] == first.cycles_added >= 2
    second = import_file(store, DATA / name, "cell-7", "auto", tz)
    assert (second.rows_added, second.cycles_added) == (0, 0)
    assert _counts(store) == after_first
    # the cycler's numbers are stored with each reading; the seq counter did not move
    got = store.conn.execute("SELECT min(cycle_no), max(cycle_no), max(step_no) FROM readings").fetchone()
    assert got[0] is not None and got[1] >= 2 and got[2] >= 8
    store.close()


def test_import_of_a_grown_file_adds_only_the_new_rows(tmp_path):
    src = (DATA / "neware_uio.csv").read_bytes().splitlines(keepends=True)
    f = tmp_path / "run.csv"
    f.write_bytes(b"".join(src[:4001]))
    store = _store(tmp_path)
    assert import_file(store, f, "c", "auto", "UTC").rows_added == 4000
    f.write_bytes(b"".join(src))
    again = import_file(store, f, "c", "auto", "UTC")
    assert (again.rows_read, again.rows_added) == (9065, 5065)
    rows = [r[0] for r in store.conn.execute("SELECT voltage_v FROM readings ORDER BY seq")]
    assert len(rows) == 9065 and rows[-1] == pytest.approx(0.4251)
    store.close()


def test_cli_import_reports_and_exits_2_on_a_truncated_binary(tmp_path):
    bad = tmp_path / "cut.mpr"
    bad.write_bytes((DATA / "biol.mpr").read_bytes()[:5000])
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'rig = "t"\n[store]\npath = "{tmp_path / "s.db"}"\n')
    out = subprocess.run(
        [sys.executable, "-m", "agent", "import", "-c", str(cfg), "--cell", "x", "--tz", "UTC", str(bad),
         str(DATA / "pec.csv")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "cut.mpr: not imported" in out.stderr and "biologic" in out.stderr
    assert "pec.csv: 16255 rows read, 16255 added" in out.stdout  # the good file after it still went in
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("SELECT count(*) FROM events WHERE kind='import.failed'").fetchone()[0] == 1


@pytest.mark.parametrize("name", [NDAX, RES])
def test_truncated_native_files_raise_a_clear_error(tmp_path, name):
    cut = tmp_path / name
    cut.write_bytes((DATA / name).read_bytes()[:20000])
    with pytest.raises(FormatError, match="not a readable|failed|no Global_Table"):
        open_source(cut, "c", "auto", "UTC").poll()


def test_changed_header_and_garbage_lines(tmp_path):
    lines = (DATA / "neware_uio.csv").read_text().splitlines()
    changed = tmp_path / "changed.csv"
    changed.write_text("\n".join([lines[0].replace("Voltage(V)", "Volt"), *lines[1:10]]) + "\n")
    with pytest.raises(FormatError, match="lacks column"):
        open_source(changed, "c", "neware").poll()
    with pytest.raises(FormatError, match="has a neware header, not maccor"):
        open_source(DATA / "neware_uio.csv", "c", "maccor").poll()
    garbage = tmp_path / "garbage.csv"
    garbage.write_text("\n".join([lines[0], lines[1], "\x00\x01 noise", lines[2], "1,2,3", lines[3], ""]) + "\n")
    store = _store(tmp_path)
    done = import_file(store, garbage, "c", "neware", "UTC")
    assert (done.rows_added, done.bad_rows) == (3, 2)
    ev = store.conn.execute("SELECT data FROM events WHERE kind='import.bad_rows'").fetchone()
    assert ev is not None and '"rows": [1, 3]' in ev[0]
    store.close()
