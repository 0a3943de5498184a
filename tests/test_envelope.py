"""Envelopes: both telemetry formats round-trip within wire resolution, match their schemas, fit the target size."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.store.cursor import ReadingRows
from agent.uplink.envelope import decode_telemetry, encode_events, pack_readings, schema_path
from agent.uplink.uplink import merge_ranges
from drivers.base import Flag

CELLS = {i: f"cell-{i:03d}" for i in range(1, 65)}


def rows(n: int, seed: int = 0, seq0: int = 1000, nan_every: int = 0) -> ReadingRows:
    rng = np.random.default_rng(seed)
    v = rng.uniform(2.5, 4.2, n)
    i = rng.uniform(-10, 10, n)
    t = rng.uniform(15, 45, n)
    flags = np.zeros(n, np.int64)
    if nan_every:
        v[::nan_every] = np.nan
    return ReadingRows(
        np.arange(seq0, seq0 + n, dtype=np.int64),
        1_790_000_000_000 + np.arange(n) // 64 * 100,
        (np.arange(n) % 64 + 1).astype(np.int64),
        v,
        i,
        t,
        flags,
    )


def validator(kind: str):
    return jsonschema.Draft202012Validator(json.loads(schema_path(kind).read_text()))


def test_compact_round_trip_within_resolution_and_schema():
    r = rows(500, nan_every=7)
    payload, n = pack_readings("rig-1", r, CELLS, "compact", 126 * 1024)
    assert n == 500
    doc = orjson.loads(payload)
    validator("telemetry.v2").validate(doc)
    back = decode_telemetry(payload)
    assert [x["seq"] for x in back] == r.seq.tolist()
    for k, rec in enumerate(back):
        assert rec["cell"] == CELLS[int(r.cell[k])] and rec["ts"] == int(r.ts_ms[k])
        if k % 7 == 0:
            assert rec["voltage_v"] is None and rec["flags"] & Flag.VOLTAGE_MISSING
        else:
            assert abs(rec["voltage_v"] - r.voltage_v[k]) <= 0.5e-4 + 1e-12
        assert abs(rec["current_a"] - r.current_a[k]) <= 0.5e-4 + 1e-12
        assert abs(rec["temperature_c"] - r.temperature_c[k]) <= 0.005 + 1e-12


def test_records_round_trip_and_schema():
    r = rows(50, nan_every=5)
    payload, _n = pack_readings("rig-1", r, CELLS, "records", 126 * 1024)
    validator("telemetry.v1").validate(orjson.loads(payload))
    back = decode_telemetry(payload)
    assert [x["seq"] for x in back] == r.seq.tolist()
    assert back[0]["voltage_v"] is None and back[1]["voltage_v"] == round(r.voltage_v[1], 4)


def test_compact_costs_at_most_45_bytes_per_reading_at_64_cells():
    payload, n = pack_readings("lab-a-rig-03", rows(4000), CELLS, "compact", 15 * 1024 - 512)
    assert len(payload) / n <= 45, len(payload) / n


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), target=st.integers(600, 20_000), envelope=st.sampled_from(["compact", "records"]))
def test_packing_never_exceeds_target_and_covers_a_prefix(n, target, envelope):
    r = rows(n, seed=n)
    taken = 0
    while taken < n:
        rest = ReadingRows(*(None if (x := getattr(r, f)) is None else x[taken:] for f in ReadingRows.__slots__))
        payload, used = pack_readings("rig-1", rest, CELLS, envelope, target)
        assert used >= 1 and (len(payload) <= target or used == 1)
        assert [x["seq"] for x in decode_telemetry(payload)] == r.seq[taken : taken + used].tolist()
        taken += used


def test_events_envelope_matches_schema():
    payload = encode_events(
        "rig-1",
        [
            {
                "seq": 1,
                "ts": 5,
                "kind": "driver.fault",
                "level": "warning",
                "source": "sim",
                "cell": None,
                "message": "x",
                "data": {"a": 1},
            }
        ],
    )
    validator("events.v1").validate(orjson.loads(payload))


def test_merge_ranges():
    assert merge_ranges([(5, 9), (1, 4), (11, 12), (12, 20)]) == [(1, 9), (11, 20)]


def test_rows_from_a_cycler_carry_its_cycle_and_step_numbers_in_both_envelopes():
    """Two more compact columns only in a message holding cycler rows; -1 (no number) decodes to null/absent."""
    r = rows(50)
    plain, _ = pack_readings("rig-1", r, CELLS, "compact", 126 * 1024)
    assert len(orjson.loads(plain)["r"][0]) == 7 and "cycle_no" not in decode_telemetry(plain)[0]
    cyc = np.where(np.arange(50) < 10, -1, np.arange(50) // 10)
    stp = np.where(np.arange(50) < 10, -1, np.arange(50) % 7)
    r = ReadingRows(r.seq, r.ts_ms, r.cell, r.voltage_v, r.current_a, r.temperature_c, r.flags, cyc, stp)
    for envelope, kind in (("compact", "telemetry.v2"), ("records", "telemetry.v1")):
        payload, n = pack_readings("rig-1", r, CELLS, envelope, 126 * 1024)
        assert n == 50
        validator(kind).validate(orjson.loads(payload))
        back = decode_telemetry(payload)
        assert [x.get("cycle_no") for x in back] == [None] * 10 + cyc[10:].tolist()
        assert [x.get("step_no") for x in back] == [None] * 10 + stp[10:].tolist()
    assert len(plain) < len(pack_readings("rig-1", r, CELLS, "compact", 126 * 1024)[0]) < 1.3 * len(plain)
