"""Predictions on the edge: a cell replayed from real Severson data gets the same cycle-life prediction from the
twin (Qd(V) from sampled discharges, features from agent/features, ONNX) as the offline evaluation of that cell;
SOH forecasts appear on every cycle with the model version; state survives a restart through the store."""

from __future__ import annotations

import numpy as np
import pytest

from agent.config import TwinCellConfig, TwinConfig
from agent.inference import CycleLifePredictor
from agent.store import Store
from agent.twin.processor import TwinProcessor
from drivers.base import ReadingBatch
from tests.twin import rigdata

I_DIS_A = 4.4  # 4C discharge of a 1.1 Ah cell, as in Severson's protocol
I_CHG_A = 1.1


def replay_batches(qdlin: np.ndarray, fine_cycles: set[int], stride: int = 5, coarse_stride: int = 50):
    """One batch per cycle for each cell: rest, CC charge, rest, CC discharge along that cycle's Qd(V), rest.

    ``qdlin`` is [cells, 1000, 99] (cycles 2..100); cycle 1 repeats cycle 2. Discharge samples follow the curve at
    every ``stride``-th grid voltage on ``fine_cycles`` (the cycles whose curves the model reads) and every
    ``coarse_stride``-th elsewhere (still a Qd(V) curve, from 21 samples; the capacity is exact either way), timed so
    that the current integrates to the curve's capacity. The coarse cycles keep the replay a third as long as a fine
    one, and a twin that took a curve from a cycle outside the model's windows would be off by more.
    """
    cells = tuple(f"s{k}" for k in range(qdlin.shape[0]))
    grid_v = np.linspace(3.5, 2.0, qdlin.shape[1])
    t_ms = np.full(qdlin.shape[0], rigdata.T0_MS, dtype=np.int64)
    for cyc in range(1, 101):
        col = max(cyc - 2, 0)
        step = stride if cyc in fine_cycles else coarse_stride
        idx = np.r_[np.arange(0, qdlin.shape[1] - 1, step), qdlin.shape[1] - 1]
        volts = grid_v[idx]
        rows = []
        for k in range(qdlin.shape[0]):
            q = np.maximum.accumulate(qdlin[k, idx, col] - qdlin[k, 0, col])
            cap = q[-1]
            seg_t, seg_i, seg_v = [], [], []
            t = t_ms[k]
            if cyc == 1:  # the cell is first seen at rest: the twin then knows the first charge starts cycle 1
                seg_t.append(t - 60_000), seg_i.append(0.0), seg_v.append(3.3)
            n_chg = 20
            # Step changes of current are logged 1 ms apart, so trapezoid integration sees clean steps.
            seg_t.append(t), seg_i.append(0.0), seg_v.append(3.3)
            dt_chg = cap / I_CHG_A * 3600.0 / n_chg
            for j in range(n_chg + 1):
                seg_t.append(t + 1 + round(j * dt_chg * 1000)), seg_i.append(I_CHG_A)
                seg_v.append(3.3 + 0.3 * j / n_chg)
            t = seg_t[-1] + 1
            seg_t.append(t), seg_i.append(0.0), seg_v.append(3.45)
            t += 120_000
            seg_t.append(t), seg_i.append(0.0), seg_v.append(3.45)
            t0 = t + 1
            times = t0 + np.round(q / I_DIS_A * 3600.0 * 1000).astype(np.int64)
            times = np.maximum(times, t0 + np.arange(times.size))  # strictly increasing
            seg_t += times.tolist()
            seg_i += [-I_DIS_A] * q.size
            seg_v += volts.tolist()
            t = int(times[-1]) + 1
            seg_t.append(t), seg_i.append(0.0), seg_v.append(2.9)
            t_ms[k] = t + 120_000
            rows.append((np.full(len(seg_t), k), seg_t, seg_i, seg_v))
        cell = np.concatenate([r[0] for r in rows])
        yield ReadingBatch.build(
            cells,
            cell,
            np.concatenate([r[1] for r in rows]),
            np.concatenate([r[3] for r in rows]),
            np.concatenate([r[2] for r in rows]),
            np.full(cell.size, 30.0),
        )


@pytest.fixture(scope="module")
def test1(shared_data):
    from cloud.datasets.severson import load_qdlin, severson_root, split_paths

    return load_qdlin(*split_paths(severson_root(shared_data), "test1"), exclude=("cell22.csv",))


def test_cycle_life_at_cycle_100_matches_offline(test1):
    test = test1
    picks = [int(np.argmin(test.cycle_life)), int(np.argmax(test.cycle_life))]
    qd = test.qdlin[picks]
    predictor = CycleLifePredictor()

    # Offline reference on the curves the replay follows: Qd from 0 at 3.5 V (Qdlin starts at about -0.4 mAh, noise a
    # measured discharge cannot have) and monotone, at the data's full resolution.
    replayed = np.maximum.accumulate(qd - qd[:, :1, :], axis=1)
    offline, off_lo, off_hi = predictor.predict_interval(predictor.features_qdlin(replayed))
    cfg = TwinConfig(drivers={"rep": TwinCellConfig(chemistry="lfp", nominal_capacity_ah=1.1)}, max_gap_s=3600)
    tp = TwinProcessor(cfg)
    cycles = []
    for b in replay_batches(qd, predictor.curve_cycles):
        cycles += tp.process(b, "rep")[1]
    with_life = [c for c in cycles if c.get("predicted_cycle_life") is not None]
    notes = [(c["cell"], c["cycle"], c.get("cycle_life_note")) for c in cycles if c["cycle"] >= 99]
    assert len(with_life) == 2, notes
    assert [c["cycle"] for c in with_life] == [100, 100]
    got = {c["cell"]: c["predicted_cycle_life"] for c in with_life}
    np.testing.assert_allclose([got["s0"], got["s1"]], offline, rtol=0.03)
    assert all(c["cycle_life_model_version"] == predictor.version for c in with_life)
    # The interval travels with the prediction: the model's 10th/90th percentiles, around it.
    for c, lo, hi in zip(sorted(with_life, key=lambda c: c["cell"]), off_lo, off_hi):
        assert c["predicted_cycle_life_lower"] < c["predicted_cycle_life"] < c["predicted_cycle_life_upper"]
        np.testing.assert_allclose(
            [c["predicted_cycle_life_lower"], c["predicted_cycle_life_upper"]], [lo, hi], rtol=0.03
        )
    # The short-lived and the long-lived cell are told apart as in the data.
    assert got["s0"] < 600 < 1500 < got["s1"]
    # Qd(V) was published on the cycles the model uses.
    sent = {c["cycle"] for c in cycles if c["cell"] == "s0" and c["qd_ah"] is not None}
    assert predictor.curve_cycles <= sent


def test_soh_forecast_on_every_cycle_and_restart_keeps_state(tmp_path):
    db = tmp_path / "agent.db"
    store = Store.open(db)
    chem = {"sim": rigdata.basic_rig_chemistry()}
    rig = rigdata.BasicRig(rigdata.BasicRigSpec(cells=4, seed=1))
    tp = TwinProcessor(TwinConfig(), store_path=db, chemistries=chem)
    first = []
    for b in rigdata.run(seconds=11 * 3600, dt_s=10.0, rig=rig):
        cy = tp.process(b, "sim")[1]
        store.append_cycles(cy)
        first += cy
    last_cycle = max(c["cycle"] for c in first if c["cell"] == "c01")
    assert last_cycle >= 3
    with_forecast = [c for c in first if c.get("predicted_capacity_ah")]
    assert with_forecast and all(c["cycle"] >= 3 for c in with_forecast)  # the model needs three cycles
    c = with_forecast[-1]
    assert c["model_version"].startswith("soh-v2-") and len(c["predicted_capacity_ah"]) == 100
    assert c["predicted_capacity_ah"][0] >= c["predicted_capacity_ah"][-1]
    # Every forecast carries its 10-90 % band, item by item, and the end of life its own.
    for row in with_forecast:
        lo, mid, hi = (
            row[k] for k in ("predicted_capacity_lower_ah", "predicted_capacity_ah", "predicted_capacity_upper_ah")
        )
        assert len(lo) == len(hi) == len(mid) and all(a <= p + 1e-5 and p <= b + 1e-5 for a, p, b in zip(lo, mid, hi))
        if row["predicted_eol_cycle"] is not None:
            assert row["predicted_eol_cycle_lower"] <= row["predicted_eol_cycle"] <= row["predicted_eol_cycle_upper"]
    # Restart: a new processor restores counters and history from the store and goes on from there.
    t_next = int(b.ts_ms[-1]) + 10_000
    tp2 = TwinProcessor(TwinConfig(), store_path=db, chemistries=chem)
    second = []
    for b in rigdata.run(seconds=8 * 3600, dt_s=10.0, rig=rig, t0_ms=t_next):
        second += tp2.process(b, "sim")[1]
    c01 = [c for c in second if c["cell"] == "c01"]
    # Numbering goes on: the cycle in progress at the restart is reported only if the twin saw all of it that
    # mattered (the cell was at rest when the agent came back and then began to charge).
    assert c01 and c01[0]["cycle"] in (last_cycle + 1, last_cycle + 2)
    assert [c["cycle"] for c in c01] == list(range(c01[0]["cycle"], c01[0]["cycle"] + len(c01)))
    assert c01[0]["start_ts"] >= max(c["ts"] for c in first if c["cell"] == "c01")
    assert c01[0].get("predicted_capacity_ah")  # history came back: a forecast from the first new cycle
    store.close()


@pytest.mark.parametrize("bad", ["nope.onnx"])
def test_missing_model_is_an_event_not_a_crash(tmp_path, bad):
    tp = TwinProcessor(TwinConfig(soh_model=tmp_path / bad), chemistries={"sim": rigdata.basic_rig_chemistry()})
    b = next(rigdata.run(cells=2, seconds=60))
    events, _ = tp.process(b, "sim")
    assert [e.kind for e in events] == ["twin.model_unavailable"]
    assert tp.soh is None and tp.cycle_life is not None


@pytest.mark.parametrize(
    ("chemistry", "nominal_ah", "off"),
    [("lfp", 1.1, None), ("lfp", 1.25, None), ("lfp", 2.3, "capacity 2.3 Ah"), ("nmc811", 1.1, "chemistry nmc811")],
)
def test_cycle_life_model_only_for_cells_like_its_training_cells(chemistry, nominal_ah, off):
    """The cycle-life model reads Ah of 1.1 Ah cells: a 2.3 Ah LFP cell (the default simulated rig's) would be read
    as a cell that hardly fades (it scored ~90,000 cycles); the twin leaves the model off for it and says why."""
    cfg = TwinConfig(drivers={"d": TwinCellConfig(chemistry=chemistry, nominal_capacity_ah=nominal_ah)})
    tp = TwinProcessor(cfg)
    tp.process(ReadingBatch.build(("a", "b"), [0, 1], [rigdata.T0_MS] * 2, [3.3, 3.3], [0.0, 0.0], [25.0, 25.0]), "d")
    (group,) = tp.groups
    if off is None:
        assert group.cycle_life is not None and group.cycle_life_off is None
    else:
        assert group.cycle_life is None and group.cycle_life_off.startswith(off)
