"""Plausibility checks on a batch: flag, never drop, never raise.

Out-of-range values are kept as measured and flagged OUT_OF_RANGE (a sensor reading 6 V is evidence, not noise).
An event is raised when a cell's field *enters* the out-of-range state, and not again until it has recovered,
so a broken sensor cannot flood the events stream.
"""

from __future__ import annotations

import numpy as np

from agent.config import ValidateConfig
from drivers.base import FIELDS, Event, Flag, ReadingBatch


class Validator:
    def __init__(self, cfg: ValidateConfig, source: str):
        self.cfg = cfg
        self.source = source
        self._bad: set[tuple[str, str]] = set()  # (cell, field) currently out of range

    def check(self, batch: ReadingBatch) -> list[Event]:
        if not len(batch):
            return []
        events: list[Event] = []
        oor_any = np.zeros(len(batch), dtype=bool)
        for name in FIELDS:
            rng = getattr(self.cfg, name)
            vals = getattr(batch, name)
            with np.errstate(invalid="ignore"):
                oor = np.isfinite(vals) & ((vals < rng.min) | (vals > rng.max))
            oor_any |= oor
            bad_now = {batch.cells[i] for i in np.unique(batch.cell[oor]).tolist()}
            seen_ok = {batch.cells[i] for i in np.unique(batch.cell[np.isfinite(vals) & ~oor]).tolist()}
            for cell in bad_now:
                if (cell, name) not in self._bad:
                    self._bad.add((cell, name))
                    sample = vals[oor & (batch.cell == batch.cells.index(cell))][0]
                    events.append(
                        Event(
                            "validate.out_of_range",
                            f"{name} of cell {cell} is {sample:g}, outside "
                            f"[{rng.min:g}, {rng.max:g}]; readings are kept and flagged",
                            level="warning",
                            source=self.source,
                            cell=cell,
                            ts_ms=int(batch.ts_ms[-1]),
                            data={"field": name, "value": float(sample), "min": rng.min, "max": rng.max},
                        )
                    )
            for cell in seen_ok - bad_now:
                self._bad.discard((cell, name))
        batch.flags[oor_any] |= np.uint32(Flag.OUT_OF_RANGE)
        return events
