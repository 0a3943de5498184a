"""Simulated fleets for training and tests: run a rig as fast as possible, collect readings in bounded chunks,
per-cycle summaries, discharge Qd(V) curves and cycle life.

    from simulator.fleet import simulate
    from simulator.rig import RigSpec
    res = simulate(RigSpec(cells=24, chemistry="lfp", capacity_ah=1.1, ambient_c=30,
                           cell_protocols=["severson:5.4C(40%)-3.6C"] * 24, cycles=1500, eol_capacity_ah=0.88,
                           qv_cycles={10, 100}), dt_s=10.0)
    res.summaries["discharge_ah"], res.cycle_life, res.qv["q_ah"]

Feature extraction (ΔQ100-10 and friends) belongs to ``agent/``; this module only produces raw data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator.rig import Rig, RigSpec

READING_FIELDS = ("time_s", "cell", "voltage_v", "current_a", "temperature_c", "soc_true")


@dataclass
class FleetResult:
    cell_ids: tuple[str, ...]
    chemistry: str
    protocols: list[str]  # per cell, as given
    summaries: dict[str, np.ndarray]  # per cycle; 'cell' indexes cell_ids
    qv: dict[str, np.ndarray]  # 'cell', 'cycle', 'q_ah' (rows x grid), 'grid_v', 'last_q_ah', 'last_cycle'
    cycle_life: np.ndarray  # cycles until a discharge fell below eol_capacity_ah (-1: not reached)
    simulated_s: float
    faults: list[dict[str, Any]] = field(default_factory=list)


class ReadingChunker:
    """Collects sampled readings into fixed-size column buffers and hands full chunks to ``sink`` (bounded)."""

    def __init__(self, n_cells: int, sink: Callable[[dict[str, np.ndarray]], None], chunk_rows: int = 500_000):
        self.n = n_cells
        self.sink = sink
        self.rows = max(chunk_rows // n_cells, 1) * n_cells
        self.buf = {k: np.empty(self.rows, dtype=np.int32 if k == "cell" else np.float64) for k in READING_FIELDS}
        self.fill = 0

    def add(self, t_s: float, m: dict[str, np.ndarray], soc: np.ndarray) -> None:
        a, b = self.fill, self.fill + self.n
        self.buf["time_s"][a:b] = t_s
        self.buf["cell"][a:b] = np.arange(self.n, dtype=np.int32)
        self.buf["voltage_v"][a:b] = m["voltage_v"]
        self.buf["current_a"][a:b] = m["current_a"]
        self.buf["temperature_c"][a:b] = m["temperature_c"]
        self.buf["soc_true"][a:b] = soc
        self.fill = b
        if self.fill == self.rows:
            self.flush()

    def flush(self) -> None:
        if self.fill:
            self.sink({k: v[: self.fill].copy() for k, v in self.buf.items()})
            self.fill = 0


def simulate(
    spec: RigSpec,
    dt_s: float = 10.0,
    duration_s: float | None = None,
    readings_every_s: float | None = None,
    on_readings: Callable[[dict[str, np.ndarray]], None] | None = None,
    progress: Callable[[float], None] | None = None,
    chunk_rows: int = 500_000,
) -> FleetResult:
    """Run ``spec`` until every cell finished its cycles (``spec.cycles``) or reached end of life
    (``spec.eol_capacity_ah``), or for ``duration_s``. Readings (sensor view + true SOC) every
    ``readings_every_s`` go to ``on_readings`` in chunks; progress(fraction 0..1) is called now and then."""
    if not dt_s > 0:
        raise ValueError(f"dt_s must be positive, got {dt_s}")
    if duration_s is None and spec.cycles is None:
        raise ValueError("give cycles (in the spec) or duration_s, or the run never ends")
    rig = Rig(spec)
    every = 0 if not readings_every_s else max(round(readings_every_s / dt_s), 1)
    chunker = ReadingChunker(rig.cells.n, on_readings, chunk_rows) if every and on_readings else None
    limit_s = duration_s if duration_s is not None else math.inf
    target = spec.cycles or 0
    steps = 0
    last_report = -1.0
    while rig.time_s < limit_s:
        rig.step(dt_s)
        steps += 1
        if chunker is not None and steps % every == 0:
            chunker.add(rig.time_s, rig.measure(), rig.cells.soc)
        if steps % 256 == 0:
            done = np.all((rig.cycle >= target) | rig.finished) if target else False
            if progress is not None:
                frac = (
                    rig.time_s / limit_s
                    if duration_s is not None
                    else float(np.mean(np.where(rig.finished, 1.0, np.minimum(rig.cycle / max(target, 1), 1.0))))
                )
                if frac - last_report >= 0.002 or done:
                    progress(frac)
                    last_report = frac
            if done:
                break
    if chunker is not None:
        chunker.flush()
    if progress is not None:
        progress(1.0)
    cols = rig.log.columns()
    grid = rig.trace.grid_v if rig.trace is not None else np.zeros(0)
    qv = rig.log.qv_matrix(rig.cells.n, grid.size)
    qv["grid_v"] = grid
    if rig.trace is not None:
        qv["last_q_ah"], qv["last_cycle"] = rig.last_qv, rig.last_qv_cycle  # each cell's latest discharge
    life = np.full(rig.cells.n, -1, dtype=np.int64)
    if spec.eol_capacity_ah is not None and cols["cell"].size:
        below = cols["discharge_ah"] < spec.eol_capacity_ah
        for j in np.unique(cols["cell"][below]):  # once per cell at the end of the run
            life[j] = int(cols["cycle"][below & (cols["cell"] == j)].min())
    protos = spec.cell_protocols if spec.cell_protocols is not None else [spec.protocol] * rig.cells.n
    return FleetResult(
        rig.cell_ids,
        rig.chem.name,
        [p if isinstance(p, str) else "custom" for p in protos],
        cols,
        qv,
        life,
        rig.time_s,
        [f.to_dict(rig.cell_ids) for f in rig.faultset.faults],
    )
