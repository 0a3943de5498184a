"""Simulator driver: steps a ``simulator`` rig model and hands its sensor view to the agent in batches.

Timestamps follow the *simulated* clock, anchored at the wall clock when the driver opens: with ``speed`` > 1
the data stays self-consistent (1 Hz sampling means 1000 ms between samples of a cell), which is what the twin's
coulomb counting needs. If the agent falls behind, the simulated clock falls behind too; nothing is buffered.
Faults from the config are injected at their simulated time and announced as ``simulator.fault`` events, so a
test of anomaly detection knows the ground truth.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from drivers.base import DriverConfig, DriverContext, ReadingBatch
from drivers.pacing import Pacer
from drivers.sampling import SampledDriver
from drivers.simulator.history import History, HistoryStats, generate
from simulator.protocol import cccv
from simulator.rig import Rig, RigSpec

HISTORY_BATCH_SAMPLES = 256  # samples per cell per batch while the simulated past is replayed


class SimulatorConfig(DriverConfig):
    type: Literal["simulator"] = "simulator"
    cells: int = Field(8, ge=1, le=4096, description="number of simulated cells")
    chemistry: str = Field("nmc811", description="cell chemistry: nmc811 (LG M50), lfp (A123 26650), lco")
    capacity_ah: float | None = Field(
        None, gt=0, le=2000, description="nominal capacity of each cell (Ah); default: the chemistry's"
    )
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
    protocol: str | list[dict[str, Any]] | None = Field(
        None,
        description="steps, or cccv | hppc | severson:<policy> | profile:<csv>; default: CC-CV charge at "
        "charge_c_rate, rest, CC discharge at discharge_c_rate, rest",
    )
    cycles: int | None = Field(None, ge=1, description="repeat the protocol N times then rest (default: forever)")
    initial_soc: float | None = Field(None, ge=0, le=1, description="start SOC (default: random 0.3..0.7)")
    ageing: bool = True
    ageing_acceleration: float = Field(1.0, ge=0, le=1e6, description="ageing runs this many times faster")
    hysteresis: bool = Field(False, description="OCV hysteresis (LFP)")
    coupling_w_k: float = Field(0.0, ge=0, le=100, description="thermal conductance between neighbour cells (W/K)")
    faults: list[dict[str, Any]] = Field(
        default_factory=list, description="injected faults (drivers/simulator/README.md)"
    )
    history_cycles: int = Field(
        0, ge=0, le=2000, description="start with a simulated past of N cycles, generated at start-up, ending now"
    )
    history_sample_s: float = Field(
        60.0,
        ge=1,
        le=600,
        description="seconds between samples of the simulated past (coarser is faster; keep it "
        "within [twin] max_gap_s or the twin does not integrate it)",
    )
    history_ageing_acceleration: float = Field(
        1.0, ge=0, le=1e6, description="ageing runs this many times faster during the simulated past"
    )

    def rig_spec(self) -> RigSpec:
        proto = (
            self.protocol
            if self.protocol is not None
            else cccv(self.charge_c_rate, self.discharge_c_rate, rest_s=self.rest_s)
        )
        start = 3 if self.protocol is None else 0  # the default schedule starts in the discharge, as it always did
        return RigSpec(
            cells=self.cells,
            chemistry=self.chemistry,
            capacity_ah=self.capacity_ah,
            protocol=proto,
            cycles=self.cycles,
            start_step=start,
            ambient_c=self.ambient_c,
            seed=self.seed,
            cell_prefix=self.cell_prefix,
            initial_soc=self.initial_soc,
            hysteresis=self.hysteresis,
            coupling_w_k=self.coupling_w_k,
            ageing=self.ageing,
            ageing_acceleration=self.ageing_acceleration,
            faults=self.faults,
            max_cycle_events=1000,
        )

    @model_validator(mode="after")
    def _buildable(self) -> SimulatorConfig:
        """Build the rig once at load, so a bad chemistry, protocol or fault is refused by ``config check``."""
        Rig(self.rig_spec())
        return self


class SimulatorDriver(SampledDriver):
    """Each read steps the rig once per due tick (up to ``max_batch_samples``), on a pacer that catches up, so
    simulated time keeps step with the wall clock while the agent keeps up (unpaced: every read is a full batch)."""

    config_model = SimulatorConfig
    config: SimulatorConfig

    def __init__(self, config: SimulatorConfig, ctx: DriverContext):
        self._dt_s = 1.0 / config.sample_hz
        pacer = (
            Pacer(self._dt_s / config.speed, catch_up=True, max_ticks=config.max_batch_samples)
            if config.paced
            else None
        )
        super().__init__(config, ctx, pacer)
        self.rig = Rig(config.rig_spec())
        self._ticks = 0
        self._t0_ms = 0
        self._announced: set[int] = set()
        self.history: History | None = None
        self.history_stats: HistoryStats | None = None
        self.history_state = "off" if config.history_cycles == 0 else "pending"

    @property
    def cells(self) -> tuple[str, ...]:
        return self.rig.cell_ids

    async def _open_transport(self) -> None:
        cfg = self.config
        if cfg.history_cycles and set(self.cells) & set(self.ctx.stored_cells()):
            self.history_state = "skipped: the store already holds cycles of these cells"
        elif cfg.history_cycles:
            self.history_state = "generating"
            self.history, st = await asyncio.to_thread(
                generate,
                self.rig,
                cfg.history_cycles,
                cfg.history_sample_s,
                cfg.history_ageing_acceleration,
                self.ctx.clock_ms,
            )
            self.history_stats = st
            self.history_state = "replaying"
            self.emit(
                "simulator.history",
                f"simulated history: {st.cycles} cycles of {len(self.cells)} cells ({st.readings} readings, "
                f"{st.simulated_s / 86400:.1f} simulated days at {cfg.history_ageing_acceleration:g}x ageing) "
                f"generated in {st.cpu_s:.1f} s of CPU; stamped to end now",
                level="info",
                history=self.history_status(),
            )
        self._t0_ms = self.history_stats.last_ts_ms if self.history_stats else self.ctx.clock_ms()

    async def _wait(self) -> int:
        if self.history is not None and not self.history.done:
            return 0  # the past is replayed as fast as the agent stores it
        return await super()._wait()

    def history_status(self) -> dict[str, Any]:
        """What health shows of the simulated past: it is simulated, how much, and when it ends."""
        out: dict[str, Any] = {"simulated": True, "state": self.history_state, "cycles": self.config.history_cycles}
        st = self.history_stats
        if st is not None:
            out.update(
                readings=st.readings,
                replayed_readings=(self.history.pos if self.history else 0) * len(self.cells),
                from_ts=st.first_ts_ms,
                until_ts=st.last_ts_ms,
                generate_cpu_s=round(st.cpu_s, 2),
                ageing_acceleration=self.config.history_ageing_acceleration,
            )
        return out

    async def _sample(self, now_ms: int, ticks: int) -> ReadingBatch:
        if self.history is not None and not self.history.done:
            batch = self.history.next_batch(HISTORY_BATCH_SAMPLES)
            if self.history.done:  # live samples follow from where the past ended; the pacer catches up
                self.history_state = "done"
            return batch
        n_ticks = ticks if self.pacer is not None else self.config.max_batch_samples
        n_cells = len(self.rig.cell_ids)
        v = np.empty((n_ticks, n_cells))
        i = np.empty((n_ticks, n_cells))
        t = np.empty((n_ticks, n_cells))
        for k in range(n_ticks):  # one step per tick, vectorised over cells
            self.rig.step(self._dt_s)
            m = self.rig.measure()
            v[k], i[k], t[k] = m["voltage_v"], m["current_a"], m["temperature_c"]
        ticks_done = np.arange(self._ticks + 1, self._ticks + n_ticks + 1, dtype=np.int64)
        self._ticks += n_ticks
        ts = self._t0_ms + np.round(ticks_done * self._dt_s * 1000.0).astype(np.int64)
        self._announce_faults()
        return ReadingBatch.build(
            self.rig.cell_ids,
            np.tile(np.arange(n_cells, dtype=np.int32), n_ticks),
            np.repeat(ts, n_cells),
            v.reshape(-1),
            i.reshape(-1),
            t.reshape(-1),
        )

    def _announce_faults(self) -> None:
        for n, f in enumerate(self.rig.faultset.faults):
            if n not in self._announced and self.rig.time_s >= f.start_s:
                self._announced.add(n)
                d = f.to_dict(self.rig.cell_ids)
                cells = d["cells"]
                self.emit(
                    "simulator.fault",
                    f"injected {f.kind} on {', '.join(cells[:8])}"
                    f"{' ...' if len(cells) > 8 else ''} at simulated {f.start_s:.0f} s",
                    level="info",
                    cell=cells[0] if len(cells) == 1 else None,
                    fault=d,
                )

    def status(self) -> dict[str, Any]:
        return {
            "simulated_s": round(self.rig.time_s, 1),
            "cycles_completed": int(self.rig.cycle.max(initial=0)),
            "chemistry": self.rig.chem.name,
            **({"history": self.history_status()} if self.config.history_cycles else {}),
        }
