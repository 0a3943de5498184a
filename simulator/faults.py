"""Faults injected by config and time: sensor faults (noise, offset, stuck, dropout) act on what ``measure()``
reports; cell faults (contact resistance, internal short, thermal-runaway precursor, capacity outlier) act on the
physics. Each fault is a dict such as ``{kind = "contact_resistance", cell = "c03", start_s = 600, ...}``.

Kinds and their parameters (all take cell: an id, a list of ids or "all"; start_s (default 0); end_s (default
never)):
  sensor_noise        field, sigma                     extra Gaussian noise on voltage_v | current_a | temperature_c
  sensor_offset       field, offset                    constant bias
  sensor_stuck        field                            the reading freezes at its value when the fault starts
  sensor_dropout      field, probability (default 1)   NaN with that probability per sample
  contact_resistance  ohm (at start, default 0), ohm_per_h (growth rate)   series resistance outside the cell
  internal_short      ohm                              a resistive short inside the cell: self-discharge and heat
  runaway_precursor   w (initial self-heating), doubling_s (default 600), max_w (default 50)
  capacity_outlier    factor (e.g. 0.85)               the cell's electrodes and lithium scaled at start_s
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

FIELDS = ("voltage_v", "current_a", "temperature_c")
_PARAMS: dict[str, dict[str, tuple[float, float, float | None]]] = {
    # name: (min, max, default or None = required)
    "sensor_noise": {"sigma": (0.0, 1e3, None)},
    "sensor_offset": {"offset": (-1e3, 1e3, None)},
    "sensor_stuck": {},
    "sensor_dropout": {"probability": (0.0, 1.0, 1.0)},
    "contact_resistance": {"ohm": (0.0, 100.0, 0.0), "ohm_per_h": (0.0, 100.0, 0.0)},
    "internal_short": {"ohm": (1e-3, 1e9, None)},
    "runaway_precursor": {"w": (0.0, 1e3, None), "doubling_s": (1.0, 1e9, 600.0), "max_w": (0.0, 1e4, 50.0)},
    "capacity_outlier": {"factor": (0.05, 2.0, None)},
}
SENSOR_KINDS = ("sensor_noise", "sensor_offset", "sensor_stuck", "sensor_dropout")
KINDS = tuple(_PARAMS)


class FaultError(ValueError):
    """A fault spec that cannot be used; the message names the fault and the bad item."""


@dataclass
class Fault:
    kind: str
    mask: np.ndarray  # which cells
    start_s: float
    end_s: float
    field: str | None
    p: dict[str, float]
    label: str
    started: bool = False
    stuck: np.ndarray | None = None

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s

    def to_dict(self, cell_ids: tuple[str, ...]) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cells": [c for c, m in zip(cell_ids, self.mask) if m],
            "start_s": self.start_s,
            "end_s": None if math.isinf(self.end_s) else self.end_s,
            "field": self.field,
            **self.p,
        }


def parse_faults(specs: list[dict[str, Any]] | None, cell_ids: tuple[str, ...]) -> list[Fault]:
    out = []
    for i, spec in enumerate(specs or [], start=1):
        label = f"fault {i}"
        if not isinstance(spec, dict):
            raise FaultError(f"{label}: expected a table/dict, got {spec!r}")
        kind = spec.get("kind")
        if kind not in _PARAMS:
            raise FaultError(f"{label}: kind = {kind!r}; known: {', '.join(KINDS)}")
        label = f"fault {i} ({kind})"
        allowed = (
            set(_PARAMS[kind]) | {"kind", "cell", "start_s", "end_s"} | ({"field"} if kind in SENSOR_KINDS else set())
        )
        unknown = set(spec) - allowed
        if unknown:
            raise FaultError(f"{label}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        cells = spec.get("cell", "all")
        names = list(cell_ids) if cells == "all" else [cells] if isinstance(cells, str) else cells
        if not isinstance(names, list) or not names:
            raise FaultError(f"{label}: cell must be an id, a list of ids or 'all'")
        missing = [c for c in names if c not in cell_ids]
        if missing:
            raise FaultError(f"{label}: unknown cell(s) {missing}; cells are {cell_ids[0]}..{cell_ids[-1]}")
        mask = np.isin(np.array(cell_ids), names)
        start = _num(label, spec, "start_s", 0.0, 1e12, 0.0)
        end = _num(label, spec, "end_s", 0.0, 1e12, math.inf)
        if end <= start:
            raise FaultError(f"{label}: end_s ({end}) must be after start_s ({start})")
        field = None
        if kind in SENSOR_KINDS:
            field = spec.get("field")
            if field not in FIELDS:
                raise FaultError(f"{label}: field = {field!r}; known: {', '.join(FIELDS)}")
        params = {k: _num(label, spec, k, lo, hi, d) for k, (lo, hi, d) in _PARAMS[kind].items()}
        out.append(Fault(kind, mask, start, end, field, params, label))
    return out


def _num(label: str, spec: dict, key: str, lo: float, hi: float, default: float | None) -> float:
    if key not in spec:
        if default is None:
            raise FaultError(f"{label}: {key} is required")
        return default
    v = spec[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi):
        raise FaultError(f"{label}: {key} = {v!r} must be a number in {lo}..{hi}")
    return float(v)


class FaultSet:
    """Vectorised application of the faults (a Python loop over faults, never over cells)."""

    def __init__(self, faults: list[Fault], n: int, rng: np.random.Generator):
        self.faults = faults
        self.n = n
        self.rng = rng
        self.physics = [f for f in faults if f.kind not in SENSOR_KINDS]
        self.sensor = [f for f in faults if f.kind in SENSOR_KINDS]

    def physics_at(self, t_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Fault]]:
        """(contact ohms, short conductance S, self-heating W) now, and capacity outliers that start now."""
        rc = np.zeros(self.n)
        g_short = np.zeros(self.n)
        heat = np.zeros(self.n)
        starting = []
        for f in self.physics:
            if not f.active(t_s):
                continue
            el = t_s - f.start_s
            if f.kind == "contact_resistance":
                rc[f.mask] += f.p["ohm"] + f.p["ohm_per_h"] * el / 3600.0
            elif f.kind == "internal_short":
                g_short[f.mask] += 1.0 / f.p["ohm"]
            elif f.kind == "runaway_precursor":
                heat[f.mask] += min(f.p["w"] * 2.0 ** (el / f.p["doubling_s"]), f.p["max_w"])
            elif f.kind == "capacity_outlier" and not f.started:
                f.started = True
                starting.append(f)
        return rc, g_short, heat, starting

    def apply_sensors(self, t_s: float, m: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for f in self.sensor:
            if not f.active(t_s):
                continue
            arr = m[f.field]
            if f.kind == "sensor_noise":
                arr[f.mask] += self.rng.normal(0.0, f.p["sigma"], int(f.mask.sum()))
            elif f.kind == "sensor_offset":
                arr[f.mask] += f.p["offset"]
            elif f.kind == "sensor_stuck":
                if f.stuck is None:
                    f.stuck = arr.copy()
                arr[f.mask] = f.stuck[f.mask]
            elif f.kind == "sensor_dropout":
                drop = f.mask & (self.rng.random(self.n) < f.p["probability"])
                arr[drop] = np.nan
        return m
