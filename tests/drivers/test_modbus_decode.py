"""Modbus register decoding: golden cases, a cross-check against pymodbus's own converter, request grouping, and
property tests (no register content and no profile layout makes the decoder raise)."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client.mixin import ModbusClientMixin

from drivers.base import Flag
from drivers.modbus.config import ModbusConfig
from drivers.modbus.profile import ModbusProfile, load_profile
from drivers.modbus.regmap import RegisterMap, plan_blocks
from drivers.profiles import FIELD_INDEX, ProfileError
from drivers.stale import Freshness

GOLDEN = Path(__file__).resolve().parents[2] / "drivers" / "modbus" / "golden"
CASES = [(f.name, c) for f in sorted(GOLDEN.glob("*.json")) for c in json.loads(f.read_text())["cases"]]


def _profile_of(golden_name: str) -> ModbusProfile:
    ref = json.loads((GOLDEN / golden_name).read_text())["profile"]
    return load_profile(str(GOLDEN / ref) if ref.endswith(".toml") else ref)


def _regs(rmap: RegisterMap, registers: dict[str, dict[str, int]]) -> np.ndarray:
    regs = np.zeros(rmap.n_registers, np.uint16)
    fcs = {"holding": 3, "input": 4}
    for fname, values in registers.items():
        for addr_s, v in values.items():
            addr = int(addr_s)
            for b, blk in enumerate(rmap.blocks):
                if blk.function_code == fcs[fname] and blk.address <= addr < blk.address + blk.count:
                    regs[rmap.block_base[b] + addr - blk.address] = v
    return regs


@pytest.mark.parametrize("golden,case", CASES, ids=[f"{g}:{c['name'][:40]}" for g, c in CASES])
def test_golden_cases(golden, case):
    rmap = RegisterMap(_profile_of(golden))
    blocks = json.loads((GOLDEN / golden).read_text())["blocks"]
    assert [[b.function_code, b.address, b.count] for b in rmap.blocks] == blocks
    d = rmap.decode(_regs(rmap, case["registers"]))
    for field, cells in case["expect"].items():
        for cell, want in cells.items():
            got = d.values[int(cell) - 1, FIELD_INDEX[field]]
            assert got == pytest.approx(want, abs=1e-9), (field, cell)
    for field, cells in case.get("not_available", {}).items():  # the device's own "no value" marker
        for cell in cells:
            assert math.isnan(d.values[cell - 1, FIELD_INDEX[field]]), (field, cell)
            assert d.mask[cell - 1, FIELD_INDEX[field]] and d.faults[cell - 1, FIELD_INDEX[field]]
    for field, cells in case.get("unmapped", {}).items():  # the profile has no register for it
        for cell in cells:
            assert not d.mask[cell - 1, FIELD_INDEX[field]], (field, cell)
    if "sensor_fault_cells" in case:
        fresh = Freshness(rmap.n_cells, 1000, 5000)
        fresh.update(d.mask, d.values, d.faults, 1000)
        fresh.set_cell_faults(np.flatnonzero(d.cell_fault_mask), d.cell_fault[d.cell_fault_mask], 1000)
        idx, _, flags = fresh.snapshot(1000)
        faulted = sorted(int(i) + 1 for i, f in zip(idx, flags) if f & Flag.SENSOR_FAULT)
        assert faulted == case["sensor_fault_cells"]


TYPES = {
    "u16": ModbusClientMixin.DATATYPE.UINT16,
    "i16": ModbusClientMixin.DATATYPE.INT16,
    "u32": ModbusClientMixin.DATATYPE.UINT32,
    "i32": ModbusClientMixin.DATATYPE.INT32,
    "f32": ModbusClientMixin.DATATYPE.FLOAT32,
    "f64": ModbusClientMixin.DATATYPE.FLOAT64,
}


@settings(max_examples=60, deadline=None)
@given(
    typ=st.sampled_from(sorted(TYPES)),
    word=st.sampled_from(["big", "little"]),
    byte=st.sampled_from(["big", "little"]),
    data=st.data(),
)
def test_decoder_agrees_with_pymodbus(typ, word, byte, data):
    """pymodbus's convert_from_registers is the reference for word order; byte order is a swap inside words."""
    width = {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2, "f64": 4}[typ]
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=width, max_size=width))
    prof = ModbusProfile.model_validate(
        {
            "name": "x",
            "cells": 1,
            "registers": [{"address": 7, "type": typ, "word_order": word, "byte_order": byte, "field": "voltage_v"}],
        }
    )
    got = RegisterMap(prof).decode(np.array(words, np.uint16)).values[0, 0]
    swapped = [((w >> 8) | (w << 8)) & 0xFFFF for w in words] if byte == "little" else words
    want = float(ModbusClientMixin.convert_from_registers(swapped, TYPES[typ], word_order=word))
    if math.isfinite(want):
        assert got == want
    else:
        assert math.isnan(got), "inf/NaN from a device is reported as missing (with a fault flag)"


def test_requests_are_grouped_within_limits():
    spans = [(3, 0, 2), (3, 2, 1), (3, 10, 2), (4, 0, 1), (4, 200, 4), (3, 3, 4)]
    blocks = plan_blocks(spans, 125, 0)
    assert [(b.function_code, b.address, b.count) for b in blocks] == [(3, 0, 7), (3, 10, 2), (4, 0, 1), (4, 200, 4)]
    assert [(b.address, b.count) for b in plan_blocks(spans, 125, 3) if b.function_code == 3] == [(0, 12)]
    assert [(b.address, b.count) for b in plan_blocks(spans, 4, 0) if b.function_code == 3] == [(0, 3), (3, 4), (10, 2)]


@settings(max_examples=80, deadline=None)
@given(
    spans=st.lists(
        st.tuples(st.sampled_from([3, 4]), st.integers(0, 400), st.sampled_from([1, 2, 4])), min_size=1, max_size=40
    ),
    max_count=st.integers(4, 125),
    max_gap=st.integers(0, 10),
)
def test_block_plan_covers_every_value_once_within_limits(spans, max_count, max_gap):
    blocks = plan_blocks(spans, max_count, max_gap)
    for fc, addr, width in spans:
        inside = [
            b for b in blocks if b.function_code == fc and b.address <= addr and addr + width <= b.address + b.count
        ]
        assert inside, f"value at {addr} ({width} registers) is split or not read"
    assert all(b.count <= max_count for b in blocks)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), name=st.sampled_from(["bms16", "all_types"]))
def test_random_registers_never_raise(data, name):
    prof = load_profile("bms16") if name == "bms16" else load_profile(str(GOLDEN / "all_types.toml"))
    rmap = RegisterMap(prof)
    n = data.draw(st.integers(0, rmap.n_registers + 3))
    raw = data.draw(st.binary(min_size=2 * n, max_size=2 * n))
    regs = np.frombuffer(raw, dtype=">u2").astype(np.uint16)
    ok = np.array(data.draw(st.lists(st.booleans(), min_size=len(rmap.blocks), max_size=len(rmap.blocks))))
    d = rmap.decode(regs, ok)
    assert d.values.shape == (prof.cells, 3)
    assert not np.isinf(d.values).any()


@settings(max_examples=40, deadline=None)
@given(
    entries=st.lists(
        st.fixed_dictionaries(
            {
                "address": st.integers(0, 300),
                "type": st.sampled_from(sorted(TYPES)),
                "word_order": st.sampled_from(["big", "little"]),
                "byte_order": st.sampled_from(["big", "little"]),
                "field": st.sampled_from(["voltage_v", "current_a", "temperature_c", "fault"]),
                "function": st.sampled_from(["holding", "input"]),
                "cell": st.integers(1, 4),
                "scale": st.floats(-1e6, 1e6, allow_nan=False),
            }
        ),
        min_size=1,
        max_size=12,
    ),
    seed=st.binary(min_size=8),
)
def test_random_profiles_decode_random_registers(entries, seed):
    prof = ModbusProfile.model_validate({"name": "r", "cells": 4, "registers": entries, "max_gap": 5})
    rmap = RegisterMap(prof)
    rng = np.random.default_rng(int.from_bytes(seed[:8], "little"))
    d = rmap.decode(rng.integers(0, 2**16, rmap.n_registers).astype(np.uint16))
    assert d.mask.any() or d.cell_fault_mask.any()


def test_profile_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "bad"\ncells = 2\n[[registers]]\naddress = 0\nunit = "mA"\nfield = "voltage_v"\n'
        '[[registers]]\naddress = 1\nfield = "temperature_c"\ncell = 3\n'
    )
    with pytest.raises(ProfileError) as exc:
        load_profile(str(bad))
    text = str(exc.value)
    assert "bad.toml" in text and "unit 'mA' measures current_a, not voltage_v" in text
    with pytest.raises(ValueError, match="no built-in profile 'nope'; built-in: bms16"):
        load_profile("nope")
    with pytest.raises(ValueError, match="set exactly one of tcp"):
        ModbusConfig.model_validate({"type": "modbus", "devices": [{"name": "a", "profile": "bms16"}]})
    with pytest.raises(ValueError, match="cell id 'x-c01' is used by devices 'a' and 'b'"):
        ModbusConfig.model_validate(
            {
                "type": "modbus",
                "devices": [
                    {"name": "a", "profile": "bms16", "tcp": "127.0.0.1:1", "cell_prefix": "x-c"},
                    {"name": "b", "profile": "bms16", "tcp": "127.0.0.1:1", "device_id": 2, "cell_prefix": "x-c"},
                ],
            }
        )


def test_struct_reference_for_golden_floats():
    """The golden file's f32/f64 registers were made with struct, not with either implementation under test."""
    words = [struct.unpack(">H", struct.pack(">f", 298.5)[i : i + 2])[0] for i in (0, 2)]
    golden = json.loads((GOLDEN / "all_types.json").read_text())["cases"][0]["registers"]["input"]
    assert [golden["0"], golden["1"]] == words
