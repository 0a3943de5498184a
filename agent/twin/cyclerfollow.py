"""The cycler's own cycle numbers in the live twin (follow mode): per-cell running state across batches.

For a cell whose rows carry the cycler's cycle number (``Origin.cycle_no`` >= 0) the twin takes the cycler's
cycles instead of detecting them from the current's sign (the group drops the sign tracker's cycles for it). A
batch may end anywhere (mid-cycle, mid-step, one row): the open cycle's partial sums, its discharge path and its
last row are carried to the next batch, whose rows are integrated with ``filecycles.integrate`` (one reduceat per
batch and cell), so a cycle sums to what ``battery-twin import`` computes for the same file. A cycle is summarised
when a row of another cycle number arrives (a run of equal numbers is a cycle, as on import). Rows at or below the
highest file row already seen for the test (a rewrite read again, the re-read after a SIGKILL) are ignored: no
double counting.

After a restart (``restore.py``) the open cycle is rebuilt from the store's readings, and the highest row of the
test from the store's import ledger. The first cycle seen is reported only if its start was seen: it begins in
the file's first rows (``HEAD_ROWS``), or (restored) the store holds a row of an earlier cycle before it, or
every row of the test.
"""

from __future__ import annotations

import itertools

import numpy as np

from agent.twin.cycles import ACC_FIELDS, FinishedCycle
from agent.twin.filecycles import integrate

HEAD_ROWS = 64
"""A test's first cycle seen is whole when it begins within the file's first rows (row numbers count every data
line: hierarchical exports number their cycle and step lines too, a few garbage lines may come first)."""


class CyclerCycles:
    def __init__(self, rest_a: np.ndarray, step_a: np.ndarray, max_points: int):
        n = rest_a.size
        self.rest_a, self.step_a, self.max_points = rest_a, step_a, max_points
        self.active = np.zeros(n, dtype=bool)  # the cell's rows carry the cycler's cycle numbers
        self.key: list[str | None] = [None] * n  # the test (ledger key) the cell's rows come from
        self.last_row = np.full(n, -1, dtype=np.int64)  # highest file row taken of that test
        self.cycle = np.full(n, -1, dtype=np.int64)  # the open cycle (-1: none)
        self.complete = np.zeros(n, dtype=bool)  # its start was seen
        self.start_ts = np.zeros(n, dtype=np.int64)
        self.last = np.zeros((n, 4))  # last row: ts_ms, A, V, step (carried into the next batch)
        self.acc = {k: np.zeros(n) for k in ACC_FIELDS}
        self.acc["t_max"][:] = -np.inf
        empty = np.zeros(0, dtype=np.float32)
        self.path: list[tuple[np.ndarray, np.ndarray]] = [(empty, empty)] * n  # open cycle's discharge (V, Ah)

    def update(
        self,
        c: np.ndarray,
        ts: np.ndarray,
        i: np.ndarray,
        v: np.ndarray,
        t: np.ndarray,
        key: str,
        row: np.ndarray,
        cycle_no: np.ndarray,
        step_no: np.ndarray,
    ) -> list[FinishedCycle]:
        """Rows of one batch from one file (``c``: group cell index per row, any order); completed cycles."""
        use = cycle_no >= 0
        if not use.any():
            return []
        order = np.flatnonzero(use)[np.lexsort((row[use], c[use]))]
        c, ts, i, v, t = c[order], ts[order], i[order], v[order], t[order]
        row, cycle_no, step_no = row[order], cycle_no[order], step_no[order]
        bounds = np.r_[0, np.flatnonzero(np.diff(c)) + 1, c.size]
        out: list[FinishedCycle] = []
        for a, b in itertools.pairwise(bounds):
            k = int(c[a])
            self.active[k] = True
            out += self._cell(k, key, ts[a:b], i[a:b], v[a:b], t[a:b], row[a:b], cycle_no[a:b], step_no[a:b])
        return out

    def restore(
        self, k: int, key: str | None, last_row: int, rows: tuple[np.ndarray, ...] | None, complete: bool
    ) -> None:
        """State after a restart: the open cycle's rows from the store (ts, A, V, degC, cycle, step), if any."""
        if rows is not None and rows[0].size:
            ts, i, v, t, cyc, stp = rows
            self.active[k] = True
            self._cell(k, key or "", ts, i, v, t, np.arange(ts.size, dtype=np.int64), cyc, stp)
            self.complete[k] = complete
        self.key[k] = key
        self.last_row[k] = last_row

    def _cell(
        self,
        k: int,
        key: str,
        ts: np.ndarray,
        i: np.ndarray,
        v: np.ndarray,
        t: np.ndarray,
        row: np.ndarray,
        cyc: np.ndarray,
        stp: np.ndarray,
    ) -> list[FinishedCycle]:
        if self.key[k] != key:  # another test in this cell's file: its cycle numbers start again
            self.key[k], self.last_row[k], self.cycle[k] = key, -1, -1
        keep = row > self.last_row[k]  # a replay (rewrite, re-read after a kill) is known by its row numbers
        if not keep.any():
            return []
        ts, i, v, t, row, cyc, stp = (x[keep] for x in (ts, i, v, t, row, cyc, stp))
        carry = bool(self.cycle[k] >= 0)
        if carry:  # the open cycle's last row leads, so the step from it to this batch's first row is integrated
            lts, li, lv, ls = self.last[k]
            ts, i, v = np.r_[int(lts), ts], np.r_[li, i], np.r_[lv, v]
            t, cyc, stp = np.r_[np.nan, t], np.r_[self.cycle[k], cyc], np.r_[int(ls), stp]
        runs = integrate(cyc, ts, i, v, t, stp, float(self.step_a[k]))
        starts, sums = runs.starts, runs.sums
        if carry:
            for f in ACC_FIELDS:
                sums[f][0] = max(sums[f][0], self.acc[f][k]) if f == "t_max" else sums[f][0] + self.acc[f][k]
        nrun = starts.size
        run_of = np.repeat(np.arange(nrun), np.diff(np.r_[starts, ts.size]))
        q_cum = np.cumsum(runs.dis_ah)
        q = q_cum - q_cum[starts][run_of] + np.where(run_of == 0, self.acc["discharge_ah"][k] if carry else 0.0, 0.0)
        dis = (i < -self.rest_a[k]) & np.isfinite(v)
        if carry:
            dis[0] = False  # already on the path
        ends = np.r_[starts[1:], ts.size]
        out: list[FinishedCycle] = []
        for r in range(nrun):
            seg = slice(starts[r], ends[r])
            pv, pq = v[seg][dis[seg]].astype(np.float32), q[seg][dis[seg]].astype(np.float32)
            if r == 0 and carry:
                pv, pq = np.r_[self.path[k][0], pv], np.r_[self.path[k][1], pq]
            start_ts = int(self.start_ts[k]) if r == 0 and carry else int(ts[starts[r]])
            complete = (bool(self.complete[k]) if carry else bool(row[0] < HEAD_ROWS)) if r == 0 else True
            if r < nrun - 1:
                if complete:
                    values = {f: float(sums[f][r]) for f in ACC_FIELDS}
                    end_ts = int(ts[ends[r] - 1])
                    out.append(
                        FinishedCycle(
                            k, int(cyc[starts[r]]), start_ts, end_ts, values, pv.astype(float), pq.astype(float)
                        )
                    )
                continue
            self.cycle[k], self.complete[k], self.start_ts[k] = int(cyc[starts[r]]), complete, start_ts
            for f in ACC_FIELDS:
                self.acc[f][k] = sums[f][r]
            while pv.size > self.max_points:  # bounded: halve the resolution, keep the whole path
                pv, pq = pv[::2], pq[::2]
            self.path[k] = (pv, pq)
        self.last[k] = (ts[-1], i[-1], v[-1], stp[-1])
        self.last_row[k] = int(row[-1])
        return out
