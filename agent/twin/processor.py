"""``TwinProcessor``: the agent's twin stage (``agent.processing.Processor``), one ``CellGroup`` per driver.

What it assumes about each driver's cells comes from ``[twin]`` (chemistry, nominal capacity; per driver or per
cell), else from the driver's own config when it has ``chemistry``/``capacity_ah`` (the simulator does), else
the chemistry's defaults. Models load once at start; a model that cannot load is reported as an event and the
twin runs without that prediction.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from agent.config import TwinConfig
from agent.features import cyclelife as cl_features
from agent.inference import CycleLifePredictor, ModelError, SohForecaster
from agent.twin import restore
from agent.twin.group import CellGroup
from agent.twin.model import GroupModel
from drivers.base import DriverConfig, Event, ReadingBatch
from simulator.chemistry import Chemistry, get_chemistry

log = logging.getLogger("agent.twin")

M = TypeVar("M", CycleLifePredictor, SohForecaster)


class TwinProcessor:
    def __init__(
        self,
        cfg: TwinConfig,
        drivers: list[DriverConfig] | tuple[DriverConfig, ...] = (),
        store_path: Path | None = None,
        chemistries: dict[str, Chemistry] | None = None,
    ):
        """``chemistries`` maps a driver name to a Chemistry object (tests and custom cells); otherwise names
        resolve through ``simulator.chemistry``."""
        self.cfg = cfg
        self.driver_cfgs = {d.name or d.type: d for d in drivers}
        self.chemistries = dict(chemistries or {})
        self.pending: list[Event] = []
        self.cycle_life = self._load(CycleLifePredictor, cfg.cycle_life_model, "cycle-life")
        self.soh = self._load(SohForecaster, cfg.soh_model, "SOH")
        curve_cycles = self.cycle_life.curve_cycles if self.cycle_life is not None else set()
        self.restored = (
            restore.load(Path(store_path), cfg.history_cycles, curve_cycles, cl_features.LAST_CYCLE)
            if store_path
            else {}
        )
        self.store_path = Path(store_path) if store_path else None
        self.groups: list[CellGroup] = []
        self._where: dict[tuple[str, str], tuple[CellGroup, int]] = {}

    def _load(self, cls: type[M], path: Path | None, what: str) -> M | None:
        try:
            model = cls(path)
            log.info("twin: %s model %s loaded", what, model.version)
            return model
        except (ModelError, OSError, KeyError, ValueError) as exc:
            log.error("twin: %s model not loaded: %s", what, exc)
            self.pending.append(
                Event(
                    "twin.model_unavailable",
                    f"{what} model not loaded: {exc}"[:500],
                    level="warning",
                    source="twin",
                    data={"model": what},
                )
            )
            return None

    # ------------------------------------------------------------------ cell model per driver / cell
    def _resolve(self, source: str, cells: list[str]) -> GroupModel:
        cfg = self.cfg
        dcfg = self.driver_cfgs.get(source)
        per_driver = cfg.drivers.get(source)
        chem: Chemistry | str = (
            self.chemistries.get(source)
            or (per_driver.chemistry if per_driver else None)
            or getattr(dcfg, "chemistry", None)
            or cfg.chemistry
        )
        chem_obj = chem if isinstance(chem, Chemistry) else get_chemistry(chem)
        default_ah = (
            (per_driver.nominal_capacity_ah if per_driver else None)
            or getattr(dcfg, "capacity_ah", None)
            or cfg.nominal_capacity_ah
            or chem_obj.nominal_capacity_ah
        )
        nominal = np.array(
            [(cfg.cells[c].nominal_capacity_ah if c in cfg.cells else None) or default_ah for c in cells], dtype=float
        )
        return GroupModel.build(chem_obj, nominal)

    def _group_for(self, source: str, cells: tuple[str, ...], from_files: bool) -> None:
        new = [c for c in cells if (source, c) not in self._where]
        if not new:
            return
        g = CellGroup(source, tuple(new), self._resolve(source, new), self.cfg, self.cycle_life, self.soh)
        # A followed cycler file's open cycle is read back only for cells whose rows come from a file (the scan walks
        # the readings table; imported cells and other drivers' cells need none of it), when their first batch comes.
        opened = restore.load_open_cycles(self.store_path, set(new)) if from_files and self.store_path else {}
        g.restore(self.restored, opened)
        self.groups.append(g)
        for k, c in enumerate(new):
            self._where[(source, c)] = (g, k)
        log.info(
            "twin: %d cells of %s as %s, %.3g Ah nominal; cycle-life model %s",
            len(new),
            source,
            g.model.name,
            float(np.median(g.model.nominal_ah)),
            "on" if g.cycle_life else f"off ({g.cycle_life_off})",
        )

    # ------------------------------------------------------------------ the Processor protocol
    def process(self, batch: ReadingBatch, source: str) -> tuple[list[Event], list[dict[str, Any]]]:
        events, self.pending = self.pending, []
        if not len(batch):
            return events, []
        present = np.unique(batch.cell)
        self._group_for(source, tuple(batch.cells[k] for k in present), batch.origin is not None)
        gidx = np.empty(len(batch.cells), dtype=np.int64)
        kidx = np.empty(len(batch.cells), dtype=np.int64)
        groups: list[CellGroup] = []
        for k in present:
            g, j = self._where[(source, batch.cells[k])]
            if g not in groups:
                groups.append(g)
            gidx[k], kidx[k] = groups.index(g), j
        cycles: list[dict[str, Any]] = []
        g_of_sample = gidx[batch.cell]
        for n, g in enumerate(groups):
            m = g_of_sample == n
            ev, cy = g.process(
                kidx[batch.cell[m]],
                batch.ts_ms[m],
                batch.current_a[m],
                batch.voltage_v[m],
                batch.temperature_c[m],
                None if batch.origin is None else batch.origin.select(m),
            )
            events += ev
            cycles += cy
        return events, cycles

    def model_versions(self) -> dict[str, str | None]:
        """The model of each family this twin loaded (None: not loaded): health, and model updates' check."""
        return {
            "cycle-life": self.cycle_life.version if self.cycle_life is not None else None,
            "soh": self.soh.version if self.soh is not None else None,
        }

    def model_failures(self) -> int:
        """Model calls that raised since this twin was built (the batch goes on without those predictions)."""
        return sum(g.inference_failures for g in self.groups)

    def known_cells(self) -> set[str]:
        """Cells with cycles in the store at start, or seen since (a simulator makes its past only for new cells)."""
        return set(self.restored) | {cell for _, cell in list(self._where)}  # a copy: the twin's thread may add

    # ------------------------------------------------------------------ views (dashboard, tests, bench)
    def state(self) -> dict[str, dict[str, Any]]:
        """SOC, cycle and latest per-cycle values per cell (``source/cell`` keys)."""
        out = {}
        for g in self.groups:
            for k, c in enumerate(g.cell_ids):
                out[f"{g.source}/{c}"] = {
                    "soc": float(g.ekf.soc[k]),
                    "cycle": int(g.files.cycle[k] if g.files.active[k] else g.tracker.cycle[k]),
                    "soh": float(g.last_soh[k]),
                    "ready": bool(g.ekf.ready[k]),
                }
        return out
