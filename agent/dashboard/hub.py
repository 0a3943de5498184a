"""The dashboard's fan-out: one poll of the store per tick, however many browsers watch.

While at least one browser is connected, every ``update_interval_s`` the hub reads what was committed since its
cursors (readings, events and cycles by seq: incremental, never history again), and pushes each subscriber one
message with the readings of *its* selected cells, the newest value of every cell that reported (for the cell
picker), new events and cycles, and agent health. With no browser connected it does not touch the store at all.

Subscribers have a bounded queue; one that falls ``QUEUE_TICKS`` behind is dropped (the browser's EventSource
reconnects with ``Last-Event-ID`` and resumes from that seq), so a stalled browser never grows the agent's memory.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson

from agent import __version__
from agent.config import DashboardConfig
from agent.control import AgentControl
from agent.dashboard.reader import FORECAST_LISTS, Readings, StoreReader
from agent.health import RateMeter
from agent.store.stats import StoreStats

log = logging.getLogger("agent.dashboard")

QUEUE_TICKS = 30  # messages a subscriber may lag before it is dropped
MAX_SELECTED = 16  # cells one browser can plot at once (the picker still shows every cell)
DEFAULT_SELECTED = 4
TICK_LIMIT_ROWS = 200_000  # readings read per tick at most; a backlog is caught up over several ticks
MAX_POINTS_PER_CELL = 3600  # backfill: points per cell at most (thinned evenly)
CYCLES_PER_CELL = 5000
RECENT_EVENTS = 100
ALARM_WINDOW_S = 3600.0
HEALTH_EVERY_S = 2.0
OPTS = orjson.OPT_SERIALIZE_NUMPY
CELL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def sse(event: str, data: bytes, id_: int | None = None) -> bytes:
    head = (f"id: {id_}\n" if id_ is not None else "") + f"event: {event}\ndata: "
    return head.encode() + data + b"\n\n"


def columns(r: Readings) -> dict[str, Any]:
    """Readings as JSON columns; values rounded to what the sensors resolve (keeps messages small)."""
    return {
        "seq": r.seq,
        "ts": r.ts_ms,
        "cell": r.cell,
        "v": np.round(r.voltage_v, 6),
        "i": np.round(r.current_a, 6),
        "t": np.round(r.temperature_c, 4),
    }


def last_per_cell(r: Readings) -> Readings:
    """The newest reading of each cell in a batch (rows are in seq order)."""
    if not len(r):
        return r
    rev_cells = r.cell[::-1]
    _, first_in_rev = np.unique(rev_cells, return_index=True)
    return r.take(len(r) - 1 - first_in_rev)


def cycle_json(rows: list[dict[str, Any]], newest_forecast_only: bool = True) -> list[dict[str, Any]]:
    """Decode the forecast lists (with the band) of the newest cycle per cell; older forecasts are dropped (bytes)."""
    newest: dict[str, int] = {}
    for k, c in enumerate(rows):
        if c["predicted_capacity_ah"] is not None:
            prev = newest.get(c["cell"])
            if prev is None or c["cycle"] >= rows[prev]["cycle"]:
                newest[c["cell"]] = k
    keep = set(newest.values())
    for k, c in enumerate(rows):
        for f in FORECAST_LISTS:
            raw = c.get(f)
            c[f] = orjson.loads(raw) if raw is not None and (k in keep or not newest_forecast_only) else None
    return rows


def first_of_each_group(cell_ids: Iterable[str], n: int) -> list[str]:
    """``n`` cells taken in turn from each id prefix (``nmc01``, ``lfp01``, ``nmc02``...): a rig of two kinds of
    cell shows both at first, not only the kind that sorts first."""
    groups: dict[str, list[str]] = {}
    for cid in sorted(cell_ids, key=lambda c: (len(c), c)):
        groups.setdefault(cid.rstrip("0123456789"), []).append(cid)
    out: list[str] = []
    queues = list(groups.values())
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


class Subscriber:
    def __init__(self, cell_ids: list[str]):
        self.cell_ids = cell_ids  # may name cells the store has not seen yet (the agent just started)
        self.auto = not cell_ids  # the browser left the choice to the agent
        self.cells = np.zeros(0, dtype=np.int64)  # their store indices, re-resolved when cells appear
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_TICKS)
        self.dropped = False
        self.reselect = False

    def resolve(self, cells: dict[int, str]) -> None:
        by_id = {cid: idx for idx, cid in cells.items()}
        if self.auto and by_id:  # asked for "any": the first cells of each kind, again as more cells appear
            pick = first_of_each_group(by_id, DEFAULT_SELECTED)
            if pick != self.cell_ids:
                self.cell_ids = pick
                self.reselect = True
        self.cells = np.array([by_id[c] for c in self.cell_ids if c in by_id], dtype=np.int64)

    def offer(self, msg: bytes | None) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:  # too slow: drop it; the browser reconnects and resumes by seq
            self.dropped = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class Hub:
    def __init__(self, agent: AgentControl, reader: StoreReader, cfg: DashboardConfig):
        self.agent = agent
        self.reader = reader
        self.cfg = cfg
        self.subs: set[Subscriber] = set()
        self.admitted = 0  # live streams admitted and not yet finished (counted before any await: see admit)
        self.cursor = {"readings": 0, "events": 0, "cycles": 0}
        self.cells: dict[int, str] = {}
        self._wake = asyncio.Event()
        self._health_at = 0.0
        self._meter = RateMeter(min_window_s=1.0)  # its own window: the agent's published rates are not disturbed
        self.ticks = 0
        self._generation = 0

    # ------------------------------------------------------------------ subscribe
    def admit(self) -> bool:
        """Take one of ``max_clients`` stream slots, or refuse. Check and count happen together, with no await in
        between, so a burst of connections cannot all pass the check while earlier ones are still subscribing.
        Every ``True`` must be paired with one ``release()``."""
        if self.admitted >= self.cfg.max_clients:
            return False
        self.admitted += 1
        return True

    def release(self) -> None:
        self.admitted = max(0, self.admitted - 1)

    async def subscribe(self, wanted: list[str], last_event_id: int | None) -> tuple[Subscriber, bytes]:
        if not self.subs:  # idle until now: jump the cursors to the present instead of replaying the gap
            self.cursor = await self.reader.call(self.reader.max_seqs)
            self.cells = await self.reader.call(self.reader.cells)
            self._generation = self.reader.generation
        known = set(self.cells.values())
        chosen = [c for c in dict.fromkeys(wanted) if c in known or CELL_ID.match(c)][:MAX_SELECTED]
        sub = Subscriber(chosen)
        sub.resolve(self.cells)
        sub.reselect = False
        upto = dict(self.cursor)  # ticks after this moment reach the queue; the init covers up to here
        self.subs.add(sub)
        self._wake.set()
        try:
            init = await self.reader.call(self._init_payload, sub, upto, last_event_id)
            init["health"] = self.health(init.pop("store_health"))
            return sub, sse("init", orjson.dumps(init, option=OPTS), upto["readings"])
        except BaseException:
            self.subs.discard(sub)
            raise

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subs.discard(sub)

    def _init_payload(self, sub: Subscriber, upto: dict[str, int], last_event_id: int | None) -> dict[str, Any]:
        """Runs on the reader thread: the backfill of one new subscriber."""
        rd = self.reader
        now_ms = time.time_ns() // 1_000_000
        window_start = rd.seq_at(now_ms - int(self.cfg.window_s * 1000))
        resumed = last_event_id is not None and window_start <= last_event_id <= upto["readings"]
        start = last_event_id if last_event_id is not None and resumed else window_start
        backfill = rd.readings_for_cells(sub.cells.tolist(), start, upto["readings"], MAX_POINTS_PER_CELL)
        n = max(len(self.cells), 1)
        latest = last_per_cell(rd.readings_after(max(0, upto["readings"] - 4 * n), 4 * n))
        return {
            "rig": self.agent.cfg.rig,
            "version": __version__,
            "now": now_ms,
            "window_s": self.cfg.window_s,
            "interval_s": self.cfg.update_interval_s,
            "resumed": resumed,
            "seq": upto["readings"],
            "cells": sorted(([idx, cid] for idx, cid in self.cells.items()), key=lambda x: x[1]),
            "selected": sub.cell_ids,
            "max_selected": MAX_SELECTED,
            "readings": columns(backfill),
            "latest": columns(latest),
            "cycles": cycle_json(rd.cycles_for_cells(sub.cell_ids, CYCLES_PER_CELL, upto["cycles"])),
            "events": [_ev(e) for e in rd.recent_events(RECENT_EVENTS)],
            "alarms": [_ev(e) for e in rd.alarm_events(now_ms - int(ALARM_WINDOW_S * 1000))],
            "alarm_window_s": ALARM_WINDOW_S,
            "store_health": rd.store_health(),
        }

    # ------------------------------------------------------------------ ticks
    async def run(self) -> None:
        interval = self.cfg.update_interval_s
        while True:
            if not self.subs:
                self._wake.clear()
                await self._wake.wait()
            started = time.monotonic()
            await self.tick()
            await asyncio.sleep(max(0.05, interval - (time.monotonic() - started)))

    def _poll(self, cursor: dict[str, int], with_health: bool, need_cells: bool) -> dict[str, Any]:
        """Runs on the reader thread: everything committed since the cursors."""
        rd = self.reader
        out: dict[str, Any] = {
            "readings": rd.readings_after(cursor["readings"], TICK_LIMIT_ROWS),
            "events": rd.events_after(cursor["events"]),
            "cycles": cycle_json(rd.cycles_after(cursor["cycles"])),
        }
        if need_cells or (len(out["readings"]) and not np.isin(out["readings"].cell, list(self.cells)).all()):
            out["cells"] = rd.cells()
        if with_health:
            out["store_health"] = rd.store_health()
        return out

    async def tick(self) -> None:
        now = time.monotonic()
        with_health = now - self._health_at >= HEALTH_EVERY_S
        got = await self.reader.call(self._poll, dict(self.cursor), with_health, not self.cells)
        if self.reader.generation != self._generation:  # the store was quarantined: a new file, seqs anew
            self._generation = self.reader.generation
            log.warning("dashboard: the store file was replaced; browsers reload their views")
            self.close()  # browsers reconnect and get a fresh init from the new store
            return
        r: Readings = got["readings"]
        if len(r):  # never move back (a subscribe after an idle spell may have jumped the cursor ahead)
            self.cursor["readings"] = max(self.cursor["readings"], int(r.seq[-1]))
        if got["events"]:
            self.cursor["events"] = max(self.cursor["events"], got["events"][-1]["seq"])
        if got["cycles"]:
            self.cursor["cycles"] = max(self.cursor["cycles"], got["cycles"][-1]["seq"])
        shared: dict[str, Any] = {
            "latest": columns(last_per_cell(r)),
            "events": [_ev(e) for e in got["events"]],
            "cycles": got["cycles"],
            "now": time.time_ns() // 1_000_000,
        }
        if "cells" in got:
            new = {k: v for k, v in got["cells"].items() if k not in self.cells}
            self.cells = got["cells"]
            if new:
                shared["cells"] = [[idx, cid] for idx, cid in new.items()]
                for sub in self.subs:
                    sub.resolve(self.cells)
        if with_health:
            self._health_at = now
            shared["health"] = self.health(got["store_health"])
        frag = orjson.Fragment(orjson.dumps(shared, option=OPTS))
        for sub in list(self.subs):
            mine = r.take(np.isin(r.cell, sub.cells)) if len(r) else r
            msg: dict[str, Any] = {"seq": self.cursor["readings"], "readings": columns(mine), "shared": frag}
            if sub.reselect:  # the browser asked for "any" before there were cells: tell it which, it reconnects
                msg["selected"], sub.reselect = sub.cell_ids, False
            sub.offer(sse("tick", orjson.dumps(msg, option=OPTS), self.cursor["readings"]))
            if sub.dropped:
                self.subs.discard(sub)
                log.warning("dashboard client fell %d updates behind; dropped (it reconnects and resumes)", QUEUE_TICKS)
        self.ticks += 1

    def close(self) -> None:
        for sub in list(self.subs):
            sub.offer(None)
        self.subs.clear()

    # ------------------------------------------------------------------ health
    def health(self, store_part: StoreStats) -> dict[str, Any]:
        """Agent health as the agent publishes it (one builder: ``AgentControl.health``), with store figures read
        on the dashboard's read-only connection, never the store's writer thread."""
        return self.agent.health(store_part, self._meter)


def _ev(e: dict[str, Any]) -> dict[str, Any]:
    """Event row with its stored JSON ``data`` passed through as is (it was validated when written)."""
    return {**e, "data": orjson.Fragment(e["data"] or "{}")}
