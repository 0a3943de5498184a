"""Native cycler files through the field's readers (the ``[cyclers]`` extra, and mdbtools from apt).

- BioLogic ``.mpr``: galvani (a numpy record array, numpy only). Time is ``time/s`` from the file's start stamp
  (local time: zone from config); current ``I/mA`` is positive on charge already (EC-Lab's convention); the step
  is ``Ns``; the cycle is ``half cycle // 2`` when the file has half cycles.
- Neware ``.nda``/``.ndax``: NewareNDA (pandas). ``Timestamp``, ``Current(mA)`` signed, ``Cycle``, ``Step``,
  ``T1``; ``Discharge_Capacity(mAh)`` per step.
- Arbin ``.res`` (a Microsoft Access file): ``mdb-export`` from mdbtools writes ``Channel_Normal_Table`` as CSV;
  ``Test_Time`` (s) from ``Global_Table.Start_DateTime`` (OLE days, local time); ``Current`` signed.

A native file is read whole each time it changes (the readers cannot start mid-file); the store's ledger drops
the rows it already has. A reader that is missing raises ``FormatError`` naming the extra to install.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from drivers.cycler.formats import FormatError
from drivers.cycler.text import Parsed, zone

NATIVE = {".mpr": "biologic", ".nda": "neware_nda", ".ndax": "neware_nda", ".res": "arbin"}
MDB_TIMEOUT_S = 300.0


def identity(path: Path) -> str:
    """The test's identity: a hash of the file's first 4 KiB (its header, which a growing file keeps)."""
    with path.open("rb") as f:
        return hashlib.sha256(f.read(4096)).hexdigest()


def read_native(path: Path, fmt: str, tz: str) -> Parsed:
    try:
        if fmt == "biologic":
            return _biologic(path, tz)
        if fmt == "neware_nda":
            return _neware_nda(path)
        if fmt == "arbin":
            return _arbin(path, tz)
    except FormatError:
        raise
    except ImportError as exc:
        raise FormatError(f"{fmt} files need {exc.name}: pip install 'battery-twin[cyclers]'") from None
    except Exception as exc:  # noqa: BLE001 (the readers raise anything on a truncated or foreign file: one clear error)
        raise FormatError(f"{path.name} is not a readable {fmt} file: {type(exc).__name__}: {exc}"[:400]) from None
    raise FormatError(f"unknown native format {fmt!r}")


NATIVE_PHASES: dict[str, dict[str, str]] = {  # per native format, as formats.toml's ``phases`` for text
    "neware_nda": {
        **dict.fromkeys(("CC_Chg", "CV_Chg", "CCCV_Chg", "CP_Chg"), "charge"),
        **dict.fromkeys(("CC_DChg", "CV_DChg", "CCCV_DChg", "CP_DChg", "CR_DChg"), "discharge"),
        "Rest": "rest",
        "Pause": "rest",
        "Control": "other",  # a control step (the sample's are at 0 A)
    },
}


def _parsed(
    n: int,
    ts_ms: Any,
    v: Any,
    i: Any,
    t: Any = None,
    cyc: Any = None,
    stp: Any = None,
    qd: Any = None,
    codes: list[str] | None = None,
    fault: Any = None,
) -> Parsed:
    def f(x: Any) -> np.ndarray:
        return np.full(n, np.nan) if x is None else np.asarray(x, dtype=np.float64)

    def k(x: Any) -> np.ndarray:
        return np.full(n, -1, np.int32) if x is None else np.asarray(x).astype(np.int32)

    row = np.arange(n, dtype=np.int64)
    ok = None if fault is None else np.asarray(fault, dtype=bool)
    return Parsed(row, np.asarray(ts_ms, np.int64), f(v), f(i), f(t), k(cyc), k(stp), f(qd), [], codes, ok)


def _biologic(path: Path, tz: str) -> Parsed:
    from galvani import BioLogic

    mpr = BioLogic.MPRfile(str(path))
    data = mpr.data
    names = data.dtype.names or ()
    start = getattr(mpr, "timestamp", None)
    if not isinstance(start, dt.datetime):
        raise FormatError(f"{path.name}: no start time in the file")
    start_ms = int(start.replace(tzinfo=zone(tz)).timestamp() * 1000)
    ts = start_ms + np.round(np.asarray(data["time/s"], np.float64) * 1000.0).astype(np.int64)
    current = np.asarray(data["I/mA"], np.float64) / 1000.0 if "I/mA" in names else None
    cyc = np.asarray(data["half cycle"]) // 2 if "half cycle" in names else None
    stp = data["Ns"] if "Ns" in names else None
    fault = mpr.get_flag("error") if "flags" in names else None  # EC-Lab's own per-point error bit
    return _parsed(len(data), ts, data["Ewe/V"], current, None, cyc, stp, fault=fault)


def _neware_nda(path: Path) -> Parsed:
    import NewareNDA

    df = NewareNDA.read(str(path))
    ts = df["Timestamp"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
    temp = df["T1"].to_numpy(dtype=np.float64) if "T1" in df.columns else None
    if temp is not None and not np.any(temp):
        temp = None  # a T1 column of zeros: no sensor wired, not 0 degC
    qd = df["Discharge_Capacity(mAh)"].to_numpy(dtype=np.float64) / 1000.0
    i = df["Current(mA)"].to_numpy(dtype=np.float64) / 1000.0
    codes = df["Status"].astype(str).tolist() if "Status" in df.columns else None
    cyc, stp = df["Cycle"].to_numpy(), df["Step"].to_numpy()
    return _parsed(len(df), ts, df["Voltage"].to_numpy(), i, temp, cyc, stp, qd, codes)


def _mdb_export(path: Path, table: str) -> list[list[str]]:
    tool = shutil.which("mdb-export")
    if tool is None:
        raise FormatError("Arbin .res files need mdbtools: apt-get install mdbtools")
    out = subprocess.run([tool, str(path), table], capture_output=True, timeout=MDB_TIMEOUT_S)
    if out.returncode != 0:
        raise FormatError(f"{path.name}: mdb-export {table} failed: {out.stderr.decode(errors='replace')[:300]}")
    return list(csv.reader(io.StringIO(out.stdout.decode("utf-8", errors="replace"))))


def _arbin(path: Path, tz: str) -> Parsed:
    glob = _mdb_export(path, "Global_Table")
    rows = _mdb_export(path, "Channel_Normal_Table")
    if len(glob) < 2 or not rows:
        raise FormatError(f"{path.name}: no Global_Table or Channel_Normal_Table rows")
    start_days = float(glob[1][glob[0].index("Start_DateTime")])
    local = dt.datetime(1899, 12, 30) + dt.timedelta(days=start_days)  # OLE automation date, local time
    start_ms = int(local.replace(tzinfo=zone(tz)).timestamp() * 1000)
    col = {name: k for k, name in enumerate(rows[0])}
    body = [r for r in rows[1:] if len(r) == len(rows[0])]

    def num(name: str) -> np.ndarray:
        k = col[name]
        return np.fromiter((float(r[k]) for r in body), np.float64, count=len(body))

    ts = start_ms + np.round(num("Test_Time") * 1000.0).astype(np.int64)
    qd = num("Discharge_Capacity")
    return _parsed(len(body), ts, num("Voltage"), num("Current"), None, num("Cycle_Index"), num("Step_Index"), qd)
