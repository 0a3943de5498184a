"""Message envelopes (schemas in ``agent/schemas``) and packing readings into messages of a target size.

``compact`` (v2, default): rows of scaled integers, serialised straight from a numpy matrix by orjson, so no
per-reading Python object is made; about 30 bytes per reading. ``records`` (v1): flat JSON records, the simplest
thing for an IoT rule to read; about 130 bytes per reading.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from agent.store.cursor import ReadingRows
from drivers.base import MISSING_FLAG

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

COMPACT_FIELDS = ["cell", "seq", "ts", "voltage_v", "current_a", "temperature_c", "flags"]
# Wire resolution: 0.1 mV, 0.1 mA, 0.01 degC. Integers times these give the unit in the field's name.
COMPACT_SCALE = [1, 1, 1, 1e-4, 1e-4, 0.01, 1]
# Rows read from a cycler's file carry its cycle and step numbers: a message with any such row has two more
# columns (-1 where a row has none); other messages stay 7 wide and the same size as before.
CYCLER_FIELDS = ["cycle_no", "step_no"]
VALUE_FIELDS = ("voltage_v", "current_a", "temperature_c")
RECORD_DECIMALS = {"voltage_v": 4, "current_a": 4, "temperature_c": 2}
IOT_CORE_MAX_BYTES = 128 * 1024
_INT_LIMIT = 2**53 - 1  # keep integers exact in every JSON reader


def encode_compact(rig: str, rows: ReadingRows, cell_ids: dict[int, str]) -> bytes:
    n = len(rows)
    uniq, inv = np.unique(rows.cell, return_inverse=True)
    seq0 = int(rows.seq[0])
    ts0 = int(rows.ts_ms.min())
    cycler = _has_cycler_numbers(rows)
    m = np.empty((n, 9 if cycler else 7), dtype=np.int64)
    m[:, 0] = inv
    m[:, 1] = rows.seq - seq0
    m[:, 2] = rows.ts_ms - ts0
    flags = rows.flags.astype(np.int64, copy=True)
    for k, name in enumerate(VALUE_FIELDS, start=3):
        vals = getattr(rows, name)
        ok = np.isfinite(vals)
        flags[~ok] |= int(MISSING_FLAG[name])
        with np.errstate(over="ignore", invalid="ignore"):  # huge values clip below; flagged by validation
            q = np.rint(np.where(ok, vals, 0.0) / COMPACT_SCALE[k])
        m[:, k] = np.clip(q, -_INT_LIMIT, _INT_LIMIT).astype(np.int64)
    m[:, 6] = flags
    if cycler:
        assert rows.cycle_no is not None and rows.step_no is not None
        m[:, 7], m[:, 8] = rows.cycle_no, rows.step_no
    doc = {
        "v": 2,
        "type": "telemetry",
        "rig": rig,
        "seq0": seq0,
        "ts0": ts0,
        "cells": [cell_ids.get(int(u), f"cell{int(u)}") for u in uniq],
        "fields": COMPACT_FIELDS + CYCLER_FIELDS if cycler else COMPACT_FIELDS,
        "scale": COMPACT_SCALE + [1, 1] if cycler else COMPACT_SCALE,
        "r": m,
    }
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def _has_cycler_numbers(rows: ReadingRows) -> bool:
    return (
        rows.cycle_no is not None
        and rows.step_no is not None
        and bool(((rows.cycle_no >= 0) | (rows.step_no >= 0)).any())
    )


def encode_records(rig: str, rows: ReadingRows, cell_ids: dict[int, str]) -> bytes:
    cols = {}
    for name in VALUE_FIELDS:
        with np.errstate(over="ignore", invalid="ignore"):
            vals = np.round(getattr(rows, name), RECORD_DECIMALS[name])
        cols[name] = [None if not math.isfinite(x) else x for x in vals.tolist()]
    flags = rows.flags.astype(np.int64, copy=True)
    for name in VALUE_FIELDS:
        flags[~np.isfinite(getattr(rows, name))] |= int(MISSING_FLAG[name])
    names = [cell_ids.get(c, f"cell{c}") for c in rows.cell.tolist()]
    records = [
        {"rig": rig, "cell": c, "seq": s, "ts": t, "voltage_v": v, "current_a": i, "temperature_c": tc, "flags": f}
        for c, s, t, v, i, tc, f in zip(
            names,
            rows.seq.tolist(),
            rows.ts_ms.tolist(),
            cols["voltage_v"],
            cols["current_a"],
            cols["temperature_c"],
            flags.tolist(),
        )
    ]
    if _has_cycler_numbers(rows):
        assert rows.cycle_no is not None and rows.step_no is not None
        for rec, cyc, stp in zip(records, rows.cycle_no.tolist(), rows.step_no.tolist()):
            if cyc >= 0 or stp >= 0:
                rec["cycle_no"], rec["step_no"] = (cyc if cyc >= 0 else None), (stp if stp >= 0 else None)
    return orjson.dumps({"v": 1, "type": "telemetry", "rig": rig, "records": records})


ENCODERS = {"compact": encode_compact, "records": encode_records}


def pack_readings(
    rig: str,
    rows: ReadingRows,
    cell_ids: dict[int, str],
    envelope: str,
    target_bytes: int,
    bytes_per_row_hint: float = 40.0,
) -> tuple[bytes, int]:
    """Encode the longest prefix of ``rows`` that fits ``target_bytes``; returns (payload, rows used).

    Guesses the row count from the bytes-per-row hint and shrinks proportionally when over; one or two
    encodes per message in practice. A single row always fits (a reading is far below IoT Core's 128 KB).
    """
    encode = ENCODERS[envelope]
    total = len(rows)
    n = min(total, max(1, int(target_bytes / max(bytes_per_row_hint, 1.0))))
    best: tuple[bytes, int] | None = None
    for _ in range(8):
        payload = encode(rig, rows.head(n), cell_ids)
        if len(payload) <= target_bytes:
            best = (payload, n)
            if n == total or len(payload) >= 0.93 * target_bytes:
                return best
            grown = min(total, int(n * target_bytes / len(payload) * 0.98))
            if grown <= n:
                return best
            n = grown
        else:
            if n == 1:
                return payload, 1
            n = max(1, min(n - 1, int(n * target_bytes / len(payload) * 0.98)))
            if best is not None and n <= best[1]:
                return best
    if best is not None:
        return best
    return encode(rig, rows.head(1), cell_ids), 1


def encode_events(rig: str, events: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(
        {
            "v": 1,
            "type": "events",
            "rig": rig,
            "events": [
                {"rig": rig, **{k: e[k] for k in ("seq", "ts", "kind", "level", "source", "cell", "message", "data")}}
                for e in events
            ],
        }
    )


def encode_cycles(rig: str, cycles: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(
        {"v": 1, "type": "cycles", "rig": rig, "cycles": [{**c, "rig": rig} for c in cycles]},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def pack_list(
    encode: Callable[[str, list[dict[str, Any]]], bytes], rig: str, items: list[dict[str, Any]], target_bytes: int
) -> tuple[bytes, int]:
    """Longest prefix of ``items`` that fits ``target_bytes`` (events and cycles are few and small)."""
    n = len(items)
    while True:
        payload = encode(rig, items[:n])
        if len(payload) <= target_bytes or n == 1:
            return payload, n
        n = max(1, n // 2)


def decode_telemetry(payload: bytes | str) -> list[dict[str, Any]]:
    """Turn either telemetry envelope back into flat records (for tests, tools and the fake cloud).
    Anything malformed raises ValueError."""
    try:
        doc = orjson.loads(payload)
        if doc.get("v") == 1:
            return [dict(r) for r in doc["records"]]
        if doc.get("v") == 2:
            out = []
            scale = doc["scale"]
            for row in doc["r"]:
                flags = int(row[6])
                rec = {
                    "rig": doc["rig"],
                    "cell": doc["cells"][row[0]],
                    "seq": doc["seq0"] + row[1],
                    "ts": doc["ts0"] + row[2],
                    "flags": flags,
                }
                for k, name in enumerate(VALUE_FIELDS, start=3):
                    rec[name] = None if flags & int(MISSING_FLAG[name]) else round(row[k] * scale[k], 6)
                if len(row) > 7 and (row[7] >= 0 or row[8] >= 0):
                    rec["cycle_no"], rec["step_no"] = (
                        (row[7] if row[7] >= 0 else None),
                        (row[8] if row[8] >= 0 else None),
                    )
                out.append(rec)
            return out
    except (KeyError, IndexError, TypeError, AttributeError, OverflowError) as exc:
        raise ValueError(f"malformed telemetry message: {exc!r}") from None
    raise ValueError(f"unknown telemetry envelope version {doc.get('v')!r}")


def schema_path(kind: str) -> Path:
    """Path of the JSON Schema for a message kind: telemetry.v1, telemetry.v2, events.v1, cycles.v1, health.v1."""
    return SCHEMA_DIR / f"{kind}.json"
