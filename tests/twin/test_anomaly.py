"""Anomaly detection: a healthy run raises no alarm; each injected fault is detected on its cell, rate-limited."""

from __future__ import annotations

import collections

from tests.twin.conftest import FAULT_CELLS, HEALTHY_CELLS, ONSET_S
from tests.twin.rigdata import T0_MS


def test_healthy_run_raises_no_alarm(healthy_run):
    _tp, events, cycles = healthy_run
    assert events == [], [(e.kind, e.cell, e.message) for e in events[:5]]
    assert len(cycles) >= 20  # the run did cycle: ~2 complete cycles per cell


def test_each_fault_is_detected_on_its_cell(faulty_run):
    _, events, _ = faulty_run
    kinds = collections.defaultdict(set)
    for e in events:
        kinds[e.cell].add(e.kind)
    for cell, expected in FAULT_CELLS.items():
        assert expected <= kinds[cell], (cell, expected, kinds[cell])
    for cell in HEALTHY_CELLS:
        assert not kinds[cell], (cell, kinds[cell])


def test_detection_delays(faulty_run):
    _, events, _ = faulty_run
    first = {}
    for e in events:
        first.setdefault((e.cell, e.kind), (e.ts_ms - T0_MS) / 1000.0)
    # A sensor offset shows within minutes; a frozen reading within its stuck time plus a margin.
    assert ONSET_S["c03"] < first[("c03", "alarm.voltage_residual")] < ONSET_S["c03"] + 600
    assert ONSET_S["c02"] < first[("c02", "alarm.sensor_stuck")] < ONSET_S["c02"] + 400
    # The self-heating cell: the rate alarm precedes the over-temperature alarm.
    assert ONSET_S["c06"] < first[("c06", "alarm.thermal_rate")] < first[("c06", "alarm.over_temperature")]


def test_events_are_rate_limited_and_well_formed(faulty_run):
    tp, events, _ = faulty_run
    repeat_ms = tp.cfg.alarms.repeat_s * 1000
    last: dict = {}
    for e in events:
        key = (e.cell, e.kind)
        if key in last:
            assert e.ts_ms - last[key] >= repeat_ms or e.kind.startswith("alarm.") and e.ts_ms > last[key], key
        last[key] = e.ts_ms
        assert e.source == "twin" and e.level in ("alarm", "warning") and e.cell
        assert {"value", "limit", "unit"} <= set(e.data)
    per_key = collections.Counter((e.cell, e.kind) for e in events)
    hours = 8
    assert max(per_key.values()) <= hours + 1  # at most one per hour each (plus re-arming), never a flood
