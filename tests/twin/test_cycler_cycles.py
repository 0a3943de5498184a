"""The live twin takes the cycler's cycle numbers in follow mode: batches split anywhere (mid-cycle, mid-step, one
row each), a restart in the middle with rows read again, give exactly the cycles the import path computes from the
whole file, each once, and no cycle of the sign-based tracker for those cells."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from agent.config import TwinCellConfig, TwinConfig
from agent.store import Store
from agent.twin.filecycles import summarise
from agent.twin.processor import TwinProcessor
from drivers.base import ReadingBatch
from drivers.cycler.readers import open_source
from drivers.cycler.text import Parsed

DATA = Path("/work/shared/data/cyclers")
CELL = "cell-1"
FILES = [  # file, zone, start (BDF), rows used (the twin's EKF runs row by row for one cell: keep tests short)
    ("neware_uio.csv", "Asia/Shanghai", None, None),
    ("nw_regular_export_ife_example.csv", "Europe/Oslo", None, None),
    ("pec.csv", "America/Denver", None, None),
    ("batmo_bdf.csv", "UTC", 1_600_000_000_000, 6000),  # 20 cycles of 109
]


def _read(name: str, tz: str, start: int | None) -> tuple[Parsed, object]:
    src = open_source(DATA / name, CELL, "auto", tz, start)
    parts = []
    while True:
        parsed, _ = src.poll(final=True)
        if parsed is None:
            break
        parts.append(parsed)
        if src.finished:
            break
    assert parts, f"{name}: no rows read"
    whole = parts[0] if len(parts) == 1 else parts[0].select(np.ones(len(parts[0]), bool))
    if len(parts) > 1:
        whole = _concat(parts)
    return whole, src


def _concat(parts: list[Parsed]) -> Parsed:
    fields = Parsed.__dataclass_fields__
    return Parsed(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields})


def _awkward_cuts(p: Parsed, rng: np.random.Generator) -> np.ndarray:
    """Cut points at every cycle change and one row either side, at step changes, some random: many batches of
    one row, batches ending mid-step and mid-cycle."""
    n = len(p)
    cyc = np.flatnonzero(np.diff(p.cycle_no)) + 1
    stp = np.flatnonzero(np.diff(p.step_no)) + 1
    cuts = np.r_[cyc - 1, cyc, cyc + 1, stp[::3], stp[1::3] + 2, rng.integers(1, n, 40)]
    return np.unique(cuts[(cuts > 0) & (cuts < n)])


def _twin(p: Parsed, store_path: Path | None = None) -> TwinProcessor:
    recorded = summarise(CELL, p.cycle_no, p.ts_ms, p.current_a, p.voltage_v, p.temperature_c, p.step_no)
    nominal = max(c["discharge_ah"] for c in recorded)  # so the sign tracker would close cycles if it ran
    cfg = TwinConfig(cells={CELL: TwinCellConfig(nominal_capacity_ah=nominal)})
    return TwinProcessor(cfg, store_path=store_path)


def _feed(tp: TwinProcessor, src: object, p: Parsed, cuts: np.ndarray, store: Store | None = None) -> list[dict]:
    out: list[dict] = []
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(p)]):
        m = np.zeros(len(p), bool)
        m[a:b] = True
        batch: ReadingBatch = src.batch(p.select(m), (CELL,), 0)  # type: ignore[attr-defined]
        events, cycles = tp.process(batch, "bts")
        if store is not None:
            store.append(batch, "bts", events, cycles)
        out += cycles
    return out


def _check(got: list[dict], p: Parsed) -> None:
    want = summarise(CELL, p.cycle_no, p.ts_ms, p.current_a, p.voltage_v, p.temperature_c, p.step_no)
    assert [c["cycle"] for c in got] == [c["cycle"] for c in want]  # each once, in order, none of the sign tracker
    for g, w in zip(got, want):
        assert g["discharge_ah"] == pytest.approx(w["discharge_ah"], rel=1e-6, abs=6e-7), g[
            "cycle"
        ]  # the twin rounds to 1 µAh
        assert g["charge_ah"] == pytest.approx(w["charge_ah"], rel=1e-6, abs=6e-7), g[
            "cycle"
        ]  # the twin rounds to 1 µAh
        assert (g["start_ts"], g["ts"]) == (w["start_ts"], w["ts"])
        assert "soh" in g and "soc_end" in g  # the twin's own fields, as cycles.v1 items from the sign tracker


@pytest.mark.parametrize("name,tz,start,rows", FILES)
def test_split_batches_give_the_files_cycles_once(name, tz, start, rows):
    p, src = _read(name, tz, start)
    if rows is not None:
        p = p.select(np.arange(len(p)) < rows)
    cuts = _awkward_cuts(p, np.random.default_rng(7))
    got = _feed(_twin(p), src, p, cuts)
    _check(got, p)
    assert len(got) >= 2, f"{name}: too few cycles to test anything"


def test_without_cycle_numbers_the_sign_tracker_would_have_counted_cycles():
    """The control for "no doubles": the same rows without the cycler's numbers close cycles by the current's
    sign, so the suppression above is doing something."""
    p, src = _read("neware_uio.csv", "Asia/Shanghai", None)
    tp = _twin(p)
    batch = src.batch(p, (CELL,), 0)  # type: ignore[attr-defined]
    plain = ReadingBatch(
        batch.cells, batch.cell, batch.ts_ms, batch.voltage_v, batch.current_a, batch.temperature_c, batch.flags
    )
    _, cycles = tp.process(plain, "bts")
    assert len(cycles) >= 1


def test_restart_mid_cycle_with_rows_read_again_keeps_every_cycle_once(tmp_path):
    """The agent dies mid-cycle and mid-step; the driver reads the last rows again (its checkpoint lagged); the
    new twin rebuilds the open cycle from the store and drops the rows it has."""
    p, src = _read("neware_uio.csv", "Asia/Shanghai", None)
    cyc = np.flatnonzero(np.diff(p.cycle_no)) + 1
    kill = int(cyc[len(cyc) // 2] + 37)  # inside a cycle, not at its start
    store = Store.open(tmp_path / "store.db", synchronous="NORMAL")
    try:
        first = _feed(
            _twin(p, tmp_path / "store.db"), src, p.select(np.arange(len(p)) < kill), np.arange(500, kill, 997), store
        )
        again = kill - 300  # rows the driver hands out again after the restart
        tp = _twin(p, tmp_path / "store.db")
        rest = p.select(np.arange(len(p)) >= again)
        second = _feed(tp, src, rest, np.arange(211, len(rest), 1500), store)
        _check(first + second, p)
        stored = [r[0] for r in store.conn.execute("SELECT cycle FROM cycles WHERE cell=? ORDER BY seq", (CELL,))]
        assert stored == [c["cycle"] for c in first + second]
    finally:
        store.close()


def test_restart_in_the_first_cycle_still_reports_it(tmp_path):
    """Nothing before the open cycle in the store: the ledger's row count says the store holds the whole test."""
    p, src = _read("neware_uio.csv", "Asia/Shanghai", None)
    cyc = np.flatnonzero(np.diff(p.cycle_no)) + 1
    kill = int(cyc[0] // 2)
    store = Store.open(tmp_path / "store.db", synchronous="NORMAL")
    try:
        first = _feed(
            _twin(p, tmp_path / "store.db"), src, p.select(np.arange(len(p)) < kill), np.arange(100, kill, 300), store
        )
        assert first == []
        rest = p.select(np.arange(len(p)) >= kill)
        second = _feed(_twin(p, tmp_path / "store.db"), src, rest, np.arange(77, len(rest), 2000), store)
        _check(second, p)
    finally:
        store.close()


def test_open_cycle_restore_survives_a_missing_or_foreign_store(tmp_path):
    from agent.twin.restore import load_open_cycles

    assert load_open_cycles(tmp_path / "none.db") == {}
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    assert load_open_cycles(junk) == {}  # a warning in the log, the twin starts fresh
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as con:  # a store from before schema 2: no ledger, no cycle numbers
        con.execute("CREATE TABLE readings(seq INTEGER PRIMARY KEY, cell INTEGER)")
    assert load_open_cycles(old) == {}


def test_a_cycle_number_that_goes_back_starts_a_new_cycle_as_on_import():
    """A procedure restarting its count inside one file: a run of equal numbers is a cycle, live as on import."""
    p, src = _read("neware_uio.csv", "Asia/Shanghai", None)
    cyc = p.cycle_no.copy()
    cyc[cyc == 3] = 1  # cycles 1, 2, 1, 4
    p = dataclasses.replace(p, cycle_no=cyc)
    got = _feed(_twin(p), src, p, np.arange(1000, len(p), 1000))
    _check(got, p)
    assert [c["cycle"] for c in got] == [1, 2, 1]


def test_the_open_cycle_scan_runs_only_for_cells_read_from_files(tmp_path, monkeypatch):
    """Reading an open cycle back walks the readings table: a twin built on a store (start-up, reload, model swap)
    does it only when a cell's first batch comes from a cycler's file, and only for that batch's cells."""
    from agent.twin import restore

    calls: list[set[str] | None] = []
    real = restore.load_open_cycles
    monkeypatch.setattr(restore, "load_open_cycles", lambda path, only=None: calls.append(only) or real(path, only))
    p, src = _read("pec.csv", "America/Denver", None)
    Store.open(tmp_path / "store.db").close()
    tp = _twin(p, tmp_path / "store.db")
    plain = ReadingBatch.build(("sim-1",), [0], [p.ts_ms[0]], [3.7], [0.0], [25.0])
    tp.process(plain, "sim")
    assert calls == []  # a driver without files: no scan
    _feed(tp, src, p.select(np.arange(len(p)) < 50), np.array([20]))
    assert calls == [{CELL}]  # once, for the file's cell, at its first batch; not again for its next batch
