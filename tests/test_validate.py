"""Out-of-range events (issue 14.8): rate-limited per (cell, field), with counts, nothing lost, flags untouched.

The vectorised Validator is checked against a plain per-sample model of the same rule on random input
(hypothesis), and on the case the issue names: a sensor flapping across a limit.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import ValidateConfig
from agent.validate import Validator
from drivers.base import FIELDS, Flag, ReadingBatch

CFG = ValidateConfig(repeat_s=60.0)


def flapping(n_batches: int, cells: tuple[str, ...], t0_ms: int = 1_700_000_000_000) -> list[ReadingBatch]:
    """One sample per cell per batch (100 ms apart), the voltage alternating 5.6 V / 4.1 V around the 5.5 V limit."""
    out = []
    for k in range(n_batches):
        v = np.full(len(cells), 5.6 if k % 2 == 0 else 4.1)
        ts = np.full(len(cells), t0_ms + 100 * k, dtype=np.int64)
        out.append(
            ReadingBatch.build(cells, np.arange(len(cells)), ts, v, np.zeros(len(cells)), np.full(len(cells), 25.0))
        )
    return out


def test_a_flapping_sensor_raises_one_event_per_interval_with_its_count():
    cells = ("c1", "c2")
    val = Validator(CFG, "drv")
    events = []
    batches = flapping(1200, cells)  # 120 s: two intervals of 60 s
    for b in batches:
        events += val.check(b)
        assert ((b.flags & Flag.OUT_OF_RANGE) != 0).tolist() == (b.voltage_v > 5.5).tolist()
    by_cell = {c: [e for e in events if e.cell == c] for c in cells}
    for c in cells:
        evs = by_cell[c]
        assert len(evs) == 2, [e.message for e in evs]  # before the fix: 600 (every other sample)
        first, second = evs
        assert first.data["count"] == 1 and first.data["episodes"] == 1 and first.data["value"] == 5.6
        assert first.data["since_ts"] is None and first.kind == "validate.out_of_range"
        # The second, 60 s later, carries what the first interval saw: 300 samples out of range in 300 episodes.
        assert second.data["count"] == 300 and second.data["episodes"] == 300
        assert second.data["since_ts"] == batches[0].ts_ms[0] and "300 samples out of range in 300 episodes" in (
            second.message
        )
        assert second.ts_ms - first.ts_ms >= 60_000
    pending = int(val.pending.sum())
    assert sum(e.data["count"] for e in events) + pending == 600 * len(cells)  # every sample accounted for


def test_a_pending_count_is_reported_once_the_value_is_back_in_range():
    val = Validator(CFG, "drv")
    t0 = 1_700_000_000_000
    mk = lambda ts, v: ReadingBatch.build(("a",), [0], [ts], [v], [0.0], [25.0])
    assert len(val.check(mk(t0, 9.0))) == 1
    assert val.check(mk(t0 + 1000, 9.0)) == [] and val.check(mk(t0 + 2000, 4.0)) == []
    (late,) = val.check(mk(t0 + 61_000, 4.0))  # back in range, but one suppressed sample is still owed
    assert late.data["count"] == 1 and late.data["value"] is None and "back inside" in late.message
    assert val.check(mk(t0 + 200_000, 4.0)) == []


def test_reload_changes_the_interval_in_place():
    val = Validator(CFG, "drv")
    t0 = 1_700_000_000_000
    mk = lambda ts: ReadingBatch.build(("a",), [0], [ts], [9.0], [0.0], [25.0])
    assert len(val.check(mk(t0))) == 1 and val.check(mk(t0 + 10_000)) == []
    val.cfg = ValidateConfig(repeat_s=5.0)  # what agent/reload.py does with a changed [validate]
    assert len(val.check(mk(t0 + 11_000))) == 1


# ---------------------------------------------------------------------------------------------- reference model
def reference(batches: list[ReadingBatch], cfg: ValidateConfig) -> list[list[tuple]]:
    """The rule, one sample at a time: what the vectorised Validator must raise, batch by batch (each batch's
    events by cell and field: their order within a batch carries no meaning)."""
    bad: dict[tuple[str, str], bool] = {}
    pending: dict[tuple[str, str], int] = {}
    episodes: dict[tuple[str, str], int] = {}
    last: dict[tuple[str, str], int] = {}
    out = []
    repeat_ms = int(cfg.repeat_s * 1000)
    for b in batches:
        out.append([])
        newest: dict[str, int] = {}
        for i in range(len(b)):
            c = b.cells[int(b.cell[i])]
            newest[c] = max(newest.get(c, -(2**62)), int(b.ts_ms[i]))
        for name in FIELDS:
            rng = getattr(cfg, name)
            first: dict[str, tuple[float, int]] = {}
            for i in range(len(b)):
                c, x = b.cells[int(b.cell[i])], float(getattr(b, name)[i])
                if not math.isfinite(x):
                    continue
                out_now = x < rng.min or x > rng.max
                key = (c, name)
                if out_now:
                    pending[key] = pending.get(key, 0) + 1
                    first.setdefault(c, (x, int(b.ts_ms[i])))
                    if not bad.get(key, False):
                        episodes[key] = episodes.get(key, 0) + 1
                bad[key] = out_now
            for c in dict.fromkeys(b.cells[int(k)] for k in b.cell):  # cells in this batch
                key = (c, name)
                if pending.get(key, 0) > 0 and newest[c] - last.get(key, -(2**62)) >= repeat_ms:
                    value, ts = first.get(c, (None, newest[c]))
                    out[-1].append((c, name, pending[key], episodes.get(key, 0), value, ts))
                    last[key], pending[key], episodes[key] = newest[c], 0, 0
    return [sorted(evs, key=lambda e: (e[0], e[1])) for evs in out]


values = st.one_of(
    st.floats(-3000, 3000, allow_nan=False),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 5.5, 5.5000001, -40.0, 120.0001]),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), n_cells=st.integers(1, 4), repeat_s=st.sampled_from([0.001, 1.0, 5.0, 3600.0]))
def test_vectorised_validator_matches_the_per_sample_rule(data, n_cells, repeat_s):
    cfg = ValidateConfig(repeat_s=repeat_s)
    cells_all = [f"c{i}" for i in range(n_cells + 1)]
    t = 1_700_000_000_000
    batches = []
    for _ in range(data.draw(st.integers(1, 8), label="batches")):
        # A driver's cell list may change between batches (a device added on reload): a subset, in any order.
        cells = tuple(data.draw(st.permutations(cells_all), label="cells")[: data.draw(st.integers(1, n_cells + 1))])
        n = data.draw(st.integers(1, 12), label="rows")
        cell = data.draw(st.lists(st.integers(0, len(cells) - 1), min_size=n, max_size=n), label="cell")
        steps = data.draw(st.lists(st.integers(-500, 3000), min_size=n, max_size=n), label="dt")
        ts = []
        for s in steps:  # mostly forward in time, sometimes back (clock jitter between sources)
            t += s
            ts.append(t)
        cols = [data.draw(st.lists(values, min_size=n, max_size=n), label=f) for f in FIELDS]
        batches.append(ReadingBatch.build(cells, cell, ts, *cols))
    val = Validator(cfg, "fuzz")
    got = []
    total_oor = 0
    for b in batches:
        evs = val.check(b)
        assert all(e.kind == "validate.out_of_range" and e.level == "warning" and e.source == "fuzz" for e in evs)
        got.append(
            sorted(
                ((e.cell, e.data["field"], e.data["count"], e.data["episodes"], e.data["value"], e.ts_ms) for e in evs),
                key=lambda e: (e[0], e[1]),
            )
        )
        for name in FIELDS:
            x = getattr(b, name)
            rng = getattr(cfg, name)
            with np.errstate(invalid="ignore"):
                oor = np.isfinite(x) & ((x < rng.min) | (x > rng.max))
            total_oor += int(oor.sum())
            assert ((b.flags & Flag.OUT_OF_RANGE) != 0)[oor].all()
    assert got == reference(batches, cfg)
    assert (
        sum(e[2] for evs in got for e in evs) + int(val.pending.sum()) == total_oor
    )  # reported or still pending: none lost
