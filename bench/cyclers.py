"""Cycler file import speed: rows per second from file to store, per format, on one core.

For each file in ../shared/data/cyclers: ``read`` is the reader alone (text: our column-wise parser over the
whole file, repeated ``REPEAT`` times for text files so the figure is not a few milliseconds; native: the field
library), ``import`` is ``agent.importer.import_file`` into a fresh store (parse, ledger, one transaction per
chunk, cycle summaries; synchronous=FULL as the agent runs). Goal: text formats >= 200,000 rows/s into the
store; native formats are limited by their reader, printed beside. Last, the live twin on a followed file (no
goal: it runs on the twin's worker thread and holds that driver's next batch, so its time per batch is printed). Run: ``.venv/bin/python bench/cyclers.py``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.importer import import_file
from agent.store import Store
from drivers.cycler.readers import open_source

DATA = Path(os.environ.get("BATTERY_TWIN_CYCLERS", "/work/shared/data/cyclers"))
REPEAT = 10  # text files are copied this many times end to end (a longer test) so timings are not noise
FILES = [
    ("maccor", "maccor_001.txt", True),
    ("neware csv", "neware_uio.csv", True),
    ("neware regular csv", "nw_regular_export_ife_example.csv", True),
    ("pec csv", "pec.csv", True),
    ("bdf csv", "batmo_bdf.csv", True),
    ("biologic mpr (galvani)", "biol.mpr", False),
    ("neware ndax (NewareNDA)", "20260302_IFE_BTS85_2_9_8_1.ndax", False),
    ("arbin res (mdbtools)", "20160805_test001_45_cc_01.res", False),
]


def _longer(src: Path, tmp: Path) -> Path:
    """The file with its data lines repeated: the same header, REPEAT times the rows (times stay as written)."""
    text = src.read_bytes()
    src_obj = open_source(src, "b", "auto", "UTC", 0)
    src_obj.poll(max_bytes=1)  # reads the header only
    assert src_obj.header is not None
    head, body = text[: src_obj.header.data_offset], text[src_obj.header.data_offset :]
    if not body.endswith(b"\n"):
        body += b"\n"
    out = tmp / src.name
    out.write_bytes(head + body * REPEAT)
    return out


def bench_one(label: str, name: str, text: bool, tmp: Path) -> dict[str, object]:
    path = _longer(DATA / name, tmp) if text else DATA / name
    t0 = time.perf_counter()
    src = open_source(path, "b", "auto", "UTC", 0)
    rows = 0
    while True:
        parsed, _ = src.poll(final=True)
        if parsed is None:
            break
        rows += len(parsed)
        if getattr(src, "finished", False):
            break
    read_s = time.perf_counter() - t0
    store = Store.open(tmp / f"{name}.db")
    t0, c0 = time.perf_counter(), time.process_time()
    done = import_file(store, path, "b", "auto", "UTC", 0)
    import_s, import_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    store.close()
    return {
        "rows": rows,
        "read_rows_per_s": round(rows / read_s),
        "import_rows_per_s": round(done.rows_added / import_s),
        # CPU time of this process: on a shared machine closer to what one free core does (mdb-export's own CPU,
        # a child process, is not in it)
        "import_rows_per_cpu_s": round(done.rows_added / max(import_cpu_s, 1e-9)),
        "import_s": round(import_s, 3),
    }


def bench_twin(rows: int = 10_000, batch: int = 5000) -> dict[str, object]:
    """The live twin on a followed file (BDF, one cell, batches of the driver's default ``max_batch_rows``): the
    whole twin (EKF, detectors, both cycle paths) and the cycler-cycle accounting alone (cyclerfollow)."""
    import numpy as np

    from agent.config import TwinConfig
    from agent.twin.cyclerfollow import CyclerCycles
    from agent.twin.processor import TwinProcessor

    src = open_source(DATA / "batmo_bdf.csv", "b", "bdf", "UTC", 0)
    p, _ = src.poll(final=True)
    assert p is not None
    tp = TwinProcessor(TwinConfig())
    c0 = time.process_time()
    for a in range(0, rows, batch):
        tp.process(src.batch(p.select((p.row >= a) & (p.row < a + batch)), ("b",), 0), "bts")
    twin_cpu = time.process_time() - c0
    acc = CyclerCycles(np.array([0.0005]), np.array([0.002]), 1000)
    c0 = time.process_time()
    for a in range(0, len(p), batch):
        s = slice(a, a + batch)
        cell = np.zeros(len(p.row[s]), np.int64)
        acc.update(
            cell,
            p.ts_ms[s],
            p.current_a[s],
            p.voltage_v[s],
            p.temperature_c[s],
            "k",
            p.row[s],
            p.cycle_no[s],
            p.step_no[s],
        )
    acc_cpu = time.process_time() - c0
    return {
        "batch_rows": batch,
        "twin_rows_per_cpu_s": round(rows / twin_cpu),
        "twin_s_per_batch": round(batch * twin_cpu / rows, 3),
        "cycler_cycles_rows_per_cpu_s": round(len(p) / acc_cpu),
    }


def main() -> dict[str, object]:
    out: dict[str, object] = {
        "conditions": f"one process, text files x{REPEAT} rows, store synchronous=FULL on tmpfs/disk of this "
        f"machine, load average {os.getloadavg()[0]:.1f} at start"
    }
    with tempfile.TemporaryDirectory() as d:
        for label, name, text in FILES:
            out[label] = bench_one(label, name, text, Path(d))
    out["live twin, one followed cell (bdf)"] = bench_twin()
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
