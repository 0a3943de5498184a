"""Plausibility checks on a batch: flag, never drop, never raise.

Out-of-range values are kept as measured and flagged OUT_OF_RANGE (a sensor reading 6 V is evidence, not noise).
Events are rate-limited per (cell, field), as the twin's alarms are: the first out-of-range sample raises one at
once, then at most one per ``validate.repeat_s`` while samples keep coming out of range, each carrying ``count``
(out-of-range samples since the previous event of that cell and field) and ``episodes`` (how often the value went
out of range again after being back in range). A sensor flapping across a limit costs one event per interval, not
one every other sample, and the events stream (never dropped by the store's size policy) stays bounded. A pending
count is reported when the interval has passed even if the value is back in range by then.

Everything per batch is numpy over rows; Python loops only over fields (3) and over events actually raised.
"""

from __future__ import annotations

import numpy as np

from agent.config import ValidateConfig
from drivers.base import FIELDS, Event, Flag, ReadingBatch

NEVER_MS = np.iinfo(np.int64).min // 2


class Validator:
    def __init__(self, cfg: ValidateConfig, source: str):
        self.cfg = cfg  # replaced in place on reload: read it at every batch
        self.source = source
        self._slot: dict[str, int] = {}  # cell id -> row of the state arrays
        self._slots_of: dict[tuple[str, ...], np.ndarray] = {}  # a batch's cells tuple -> their rows
        n, f = 0, len(FIELDS)
        self.bad = np.zeros((n, f), dtype=bool)  # the newest finite sample was out of range
        self.pending = np.zeros((n, f), dtype=np.int64)  # out-of-range samples since the last event
        self.episodes = np.zeros((n, f), dtype=np.int64)  # entries into out-of-range since the last event
        self.last_ms = np.full((n, f), NEVER_MS, dtype=np.int64)  # ts of the last event

    def _slots(self, cells: tuple[str, ...]) -> np.ndarray:
        got = self._slots_of.get(cells)
        if got is None:
            for c in cells:
                self._slot.setdefault(c, len(self._slot))
            grow = len(self._slot) - len(self.bad)
            if grow > 0:
                f = len(FIELDS)
                self.bad = np.vstack([self.bad, np.zeros((grow, f), dtype=bool)])
                self.pending = np.vstack([self.pending, np.zeros((grow, f), dtype=np.int64)])
                self.episodes = np.vstack([self.episodes, np.zeros((grow, f), dtype=np.int64)])
                self.last_ms = np.vstack([self.last_ms, np.full((grow, f), NEVER_MS, dtype=np.int64)])
            if len(self._slots_of) >= 64:  # a driver whose cell list keeps changing: keep the cache bounded
                self._slots_of.clear()
            got = self._slots_of[cells] = np.array([self._slot[c] for c in cells], dtype=np.int64)
        return got

    def check(self, batch: ReadingBatch) -> list[Event]:
        if not len(batch):
            return []
        slot = self._slots(batch.cells)[batch.cell]  # state row of every reading
        order = np.argsort(slot, kind="stable")  # readings grouped by cell, in arrival order within a cell
        s, ts = slot[order], batch.ts_ms[order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        present = s[starts]  # the cells in this batch, and the newest ts of each
        now_ms = np.maximum.reduceat(ts, starts)
        repeat_ms = int(self.cfg.repeat_s * 1000)
        events: list[Event] = []
        oor_any = np.zeros(len(batch), dtype=bool)
        for f, name in enumerate(FIELDS):
            rng = getattr(self.cfg, name)
            vals = getattr(batch, name)
            finite = np.isfinite(vals)
            with np.errstate(invalid="ignore"):
                oor = finite & ((vals < rng.min) | (vals > rng.max))
            oor_any |= oor
            v, fin, bad = vals[order], finite[order], oor[order]
            # Entries into out-of-range: a finite sample out of range whose previous finite sample (in this batch,
            # or the state left by the last one) was not. NaN samples neither enter nor leave.
            k = np.flatnonzero(fin)
            ks, kb = s[k], bad[k]
            if len(k):
                first = np.r_[True, ks[1:] != ks[:-1]]
                prev = np.empty_like(kb)
                prev[1:] = kb[:-1]
                prev[first] = self.bad[ks[first], f]
                entries = np.bincount(ks[kb & ~prev], minlength=len(self.bad))
                last = np.r_[first[1:], True]
                self.bad[ks[last], f] = kb[last]
                self.episodes[:, f] += entries
            self.pending[:, f] += np.bincount(s[bad], minlength=len(self.bad))
            due = present[(self.pending[present, f] > 0) & (now_ms - self.last_ms[present, f] >= repeat_ms)]
            if not len(due):
                continue
            b = np.flatnonzero(bad)  # first out-of-range sample of each cell in this batch, for the message
            cells_b, first_b = np.unique(s[b], return_index=True)
            first_val: dict[int, float] = dict(zip(cells_b.tolist(), v[b[first_b]].tolist(), strict=True))
            first_ts: dict[int, int] = dict(zip(cells_b.tolist(), ts[b[first_b]].tolist(), strict=True))
            newest: dict[int, int] = dict(zip(present.tolist(), now_ms.tolist(), strict=True))
            ids = list(self._slot)
            for c in due.tolist():
                events.append(self._event(ids[c], name, c, f, first_val.get(c), first_ts.get(c, newest[c])))
                self.last_ms[c, f] = newest[c]
                self.pending[c, f] = 0
                self.episodes[c, f] = 0
        batch.flags[oor_any] |= np.uint32(Flag.OUT_OF_RANGE)
        return events

    def _event(self, cell: str, name: str, c: int, f: int, value: float | None, ts_ms: int) -> Event:
        rng = getattr(self.cfg, name)
        count, episodes = int(self.pending[c, f]), int(self.episodes[c, f])
        since = int(self.last_ms[c, f])
        if value is not None:
            what = f"{name} of cell {cell} is {value:g}, outside [{rng.min:g}, {rng.max:g}]"
        else:
            what = f"{name} of cell {cell} is back inside [{rng.min:g}, {rng.max:g}]"
        more = (
            f"; {count} samples out of range"
            + (f" in {episodes} episodes" if episodes > 1 else "")
            + (" since the last event" if since != NEVER_MS else "")
        )
        return Event(
            "validate.out_of_range",
            f"{what}{more}; readings are kept and flagged (at most one event per {self.cfg.repeat_s:g} s)",
            level="warning",
            source=self.source,
            cell=cell,
            ts_ms=ts_ms,
            data={
                "field": name,
                "value": value,
                "min": rng.min,
                "max": rng.max,
                "count": count,
                "episodes": episodes,
                "since_ts": since if since != NEVER_MS else None,
            },
        )
