"""Fuzzing with hypothesis: everything that comes from outside must give a clear error, never another exception.

Targets: the config loader (structure and raw text), the reading path (any float values, any batch shape:
validate -> store -> both envelopes), a store file of random bytes, and the telemetry decoder. CI runs a few
hundred cases per target (30 for the store file, which makes a database per case); `make soak`
(BATTERY_TWIN_SOAK=1) runs 100,000 per target.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import ConfigError, ValidateConfig, load_config, parse_config
from agent.store import Store
from agent.uplink.envelope import decode_telemetry, pack_readings, schema_path
from agent.validate import Validator
from drivers.base import ReadingBatch
from tests.reliability.common import soak_factor

CASES = 100_000 if soak_factor() else 300
FUZZ = settings(
    max_examples=CASES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=not soak_factor()
)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=30)
)
toml_values = st.recursive(
    scalars.filter(lambda v: v is not None),
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=12), kids, max_size=4)),
    max_leaves=12,
)
KEYS = [
    "rig",
    "store",
    "uplink",
    "drivers",
    "validate",
    "log",
    "supervisor",
    "dashboard",
    "path",
    "type",
    "cells",
    "endpoint",
    "port",
    "synchronous",
    "max_bytes",
    "simulator",
    "sample_hz",
    "name",
    "level",
    "min",
    "max",
]
config_docs = st.dictionaries(
    st.one_of(st.sampled_from(KEYS), st.text(max_size=10)),
    st.one_of(toml_values, st.lists(st.dictionaries(st.sampled_from(KEYS), toml_values, max_size=5), max_size=3)),
    max_size=8,
)


@FUZZ
@given(doc=config_docs)
def test_config_structures_give_config_error_or_config(doc):
    try:
        cfg = parse_config(doc, "fuzz.toml")
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) for p in exc.problems)
    else:
        assert cfg.rig


@FUZZ
@given(text=st.text(max_size=300))
def test_config_text_gives_config_error_or_config(tmp_path_factory, text):
    path = tmp_path_factory.getbasetemp() / "fuzz-config.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass") if "\ud800" not in text else None
    if not path.exists():
        return
    try:
        load_config(path)
    except ConfigError:
        pass


floats = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True, width=64)


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory):
    s = Store.open(tmp_path_factory.mktemp("fuzz") / "s.db", synchronous="NORMAL")
    yield s
    s.close()


SCHEMAS = {v: jsonschema.Draft202012Validator(json.loads(schema_path(f"telemetry.v{v}").read_text())) for v in (1, 2)}


@FUZZ
@given(data=st.data(), n_cells=st.integers(1, 5))
def test_any_values_flow_through_validate_store_and_both_envelopes(fuzz_store, data, n_cells):
    n = data.draw(st.integers(1, 40))
    cells = tuple(data.draw(st.text(min_size=1, max_size=8), label=f"cell{i}") + f"#{i}" for i in range(n_cells))
    cell = data.draw(st.lists(st.integers(0, n_cells - 1), min_size=n, max_size=n))
    ts = data.draw(st.lists(st.integers(0, 2**41), min_size=n, max_size=n))
    vals = [data.draw(st.lists(floats, min_size=n, max_size=n)) for _ in range(3)]
    batch = ReadingBatch.build(cells, cell, ts, *vals)
    Validator(ValidateConfig(), "fuzz").check(batch)
    first, last = fuzz_store.append(batch, "fuzz")
    rows = fuzz_store.unsent.readings(after_seq=first - 1, upto_seq=last, limit=n)
    assert rows.seq.tolist() == list(range(first, last + 1))
    for env, v in (("compact", 2), ("records", 1)):
        payload, used = pack_readings("fuzz-rig", rows, fuzz_store.cell_ids, env, 126 * 1024)
        assert used == n
        SCHEMAS[v].validate(orjson.loads(payload))
        back = decode_telemetry(payload)
        for k, rec in enumerate(back):
            x = rows.voltage_v[k]
            if rec["voltage_v"] is not None and math.isfinite(x) and abs(x) < 1e9:
                assert abs(rec["voltage_v"] - x) <= 1e-4
    fuzz_store.acker.mark_sent("readings", [(first, last)])


@FUZZ
@given(
    cells=st.lists(st.text(max_size=5), max_size=4),
    cell=st.lists(st.integers(-3, 6), max_size=8),
    ts=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8),
    v=st.lists(floats, max_size=8),
)
def test_batch_build_rejects_bad_shapes_with_value_error(cells, cell, ts, v):
    try:
        ReadingBatch.build(tuple(cells), cell, ts or 0, v or None)
    except ValueError:
        pass


@settings(
    max_examples=CASES if soak_factor() else 30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=not soak_factor(),
)
@given(blob=st.binary(max_size=20_000), header=st.booleans())
def test_store_file_of_random_bytes_is_quarantined_or_opened(blob, header):
    with tempfile.TemporaryDirectory(prefix="fuzz-store-") as d:  # one directory per case, removed after it
        p = Path(d) / "s.db"
        p.write_bytes((b"SQLite format 3\x00" if header else b"") + blob)
        s = Store.open(p, reserve_bytes=0)
        events = s.opened
        assert s.append(ReadingBatch.build(("a",), [0], [1], [3.7], [0.0], [25.0]))[0] >= 1
        assert all(e.kind in ("store.quarantined", "store.rewound") for e in events)
        s.close()


@FUZZ
@given(
    payload=st.one_of(
        st.binary(max_size=300),
        toml_values.map(lambda v: json.dumps(v, default=str).encode()),
        st.fixed_dictionaries(
            {
                "v": st.sampled_from([1, 2]),
                "r": toml_values,
                "records": toml_values,
                "cells": toml_values,
                "scale": toml_values,
            }
        ).map(lambda d: json.dumps(d, default=str).encode()),
    )
)
def test_telemetry_decoder_raises_only_value_error(payload):
    try:
        decode_telemetry(payload)
    except ValueError:
        pass
