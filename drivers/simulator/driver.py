"""Simulator driver: steps a ``simulator`` rig model and hands its sensor view to the agent in batches.

Timestamps follow the *simulated* clock, anchored at the wall clock when the driver opens: with ``speed`` > 1
the data stays self-consistent (1 Hz sampling means 1000 ms between samples of a cell), which is what the twin's
coulomb counting needs. If the agent falls behind, the simulated clock falls behind too; nothing is buffered.
"""
from __future__ import annotations

import asyncio
import time
from typing import Literal

import numpy as np
from pydantic import Field

from drivers.base import Driver, DriverConfig, DriverContext, ReadingBatch
from simulator import BasicRig, BasicRigSpec


class SimulatorConfig(DriverConfig):
    type: Literal["simulator"] = "simulator"
    cells: int = Field(8, ge=1, le=4096, description="number of simulated cells")
    capacity_ah: float = Field(5.0, gt=0, le=2000, description="nominal capacity of each cell (Ah)")
    sample_hz: float = Field(1.0, gt=0, le=1000, description="samples per cell per simulated second")
    speed: float = Field(1.0, gt=0, le=1e6, description="simulated seconds per wall-clock second")
    paced: bool = Field(True, description="false: produce as fast as the agent consumes (benchmarks)")
    max_batch_samples: int = Field(256, ge=1, le=100_000, description="samples per cell per batch at most")
    charge_c_rate: float = Field(0.5, gt=0, le=20)
    discharge_c_rate: float = Field(1.0, gt=0, le=50)
    rest_s: float = Field(600.0, ge=0)
    ambient_c: float = Field(25.0, ge=-40, le=80)
    seed: int = 0
    cell_prefix: str = Field("c", pattern=r"^[A-Za-z0-9_.:-]{0,32}$")


class SimulatorDriver(Driver):
    config_model = SimulatorConfig

    def __init__(self, config: SimulatorConfig, ctx: DriverContext):
        super().__init__(config, ctx)
        self.rig = BasicRig(BasicRigSpec(
            cells=config.cells, capacity_ah=config.capacity_ah, charge_c_rate=config.charge_c_rate,
            discharge_c_rate=config.discharge_c_rate, rest_s=config.rest_s, ambient_c=config.ambient_c,
            seed=config.seed, cell_prefix=config.cell_prefix,
        ))
        self._dt_s = 1.0 / config.sample_hz
        self._ticks = 0
        self._t0_wall = 0.0
        self._t0_ms = 0

    @property
    def cells(self) -> tuple[str, ...]:
        return self.rig.cell_ids

    async def open(self) -> None:
        self._t0_wall = time.monotonic()
        self._t0_ms = self.ctx.clock_ms()

    async def read(self) -> ReadingBatch:
        cfg: SimulatorConfig = self.config  # type: ignore[assignment]
        n_ticks = cfg.max_batch_samples
        if cfg.paced:
            tick_wall_s = self._dt_s / cfg.speed
            wait = self._t0_wall + (self._ticks + 1) * tick_wall_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            due = int((time.monotonic() - self._t0_wall) / tick_wall_s) - self._ticks
            n_ticks = max(1, min(due, cfg.max_batch_samples))
        n_cells = len(self.rig.cell_ids)
        v = np.empty((n_ticks, n_cells))
        i = np.empty((n_ticks, n_cells))
        t = np.empty((n_ticks, n_cells))
        for k in range(n_ticks):  # one step per tick, vectorised over cells
            self.rig.step(self._dt_s)
            m = self.rig.measure()
            v[k], i[k], t[k] = m["voltage_v"], m["current_a"], m["temperature_c"]
        ticks = np.arange(self._ticks + 1, self._ticks + n_ticks + 1, dtype=np.int64)
        self._ticks += n_ticks
        ts = self._t0_ms + np.round(ticks * self._dt_s * 1000.0).astype(np.int64)
        return ReadingBatch.build(
            self.rig.cell_ids,
            np.tile(np.arange(n_cells, dtype=np.int32), n_ticks),
            np.repeat(ts, n_cells),
            v.reshape(-1), i.reshape(-1), t.reshape(-1),
        )

    def status(self) -> dict:
        return {"simulated_s": round(self.rig.time_s, 1), "cycles_completed": int(self.rig.cycle.max(initial=0))}
