"""Helpers for the driver tests: pty pairs from socat, TOML configs, the agent in-process, store read-back, and
the check that what the agent stored is what the emulator served."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import parse_config
from agent.pipeline import Agent
from drivers.base import Event, Flag
from tests.support.agentproc import to_toml
from tests.support.waiting import wait_until

__all__ = ["to_toml", "wait_until"]  # the driver tests write their configs and wait with these

FIELDS = ("voltage_v", "current_a", "temperature_c")


class PtyPair:
    """Two linked pseudo-terminals made by socat (the same thing a USB-serial pair is to the software)."""

    def __init__(self, folder: Path, name: str = "tty"):
        self.a = folder / f"{name}-emulator"
        self.b = folder / f"{name}-agent"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 5.0) -> PtyPair:
        socat = shutil.which("socat")
        if socat is None:
            raise AssertionError(
                "socat is not installed: the serial, RTU and slcan tests need it "
                "(apt-get install socat; `make test` installs it when run as root)"
            )
        for p in (self.a, self.b):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        self.proc = subprocess.Popen(
            [socat, f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while not (self.a.exists() and self.b.exists()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"socat did not create the pty pair {self.a} / {self.b}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def agent_config(tmp_path: Path, drivers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "rig": "drivers-test-rig",
        "store": {"path": str(tmp_path / "store" / "agent.db"), "synchronous": "NORMAL"},
        "drivers": drivers,
        "log": {"level": "INFO"},
        "supervisor": {"backoff_initial_s": 0.5, "backoff_max_s": 2.0},
    }
    cfg.update(extra)
    return cfg


@contextlib.asynccontextmanager
async def running_agent(cfg: dict[str, Any]) -> AsyncIterator[Agent]:
    """The real agent in this process (needed for python-can's in-process virtual bus)."""
    agent = Agent(parse_config(cfg))
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop(drain_timeout_s=0.1)


@dataclass
class Rows:
    ts_ms: np.ndarray
    values: np.ndarray  # (k, 3)
    flags: np.ndarray


def stored_rows(db_path: str | Path) -> dict[str, Rows]:
    db = sqlite3.connect(str(db_path))
    try:
        cur = db.execute(
            "SELECT c.id, r.ts_ms, r.voltage_v, r.current_a, r.temperature_c, r.flags FROM readings r "
            "JOIN cells c ON c.idx = r.cell ORDER BY r.seq"
        )
        by: dict[str, list] = {}
        for cid, ts, v, i, t, fl in cur:
            by.setdefault(cid, []).append(
                (ts, np.nan if v is None else v, np.nan if i is None else i, np.nan if t is None else t, fl)
            )
    finally:
        db.close()
    out = {}
    for cid, rows in by.items():
        a = np.array(rows, dtype=np.float64)
        out[cid] = Rows(a[:, 0].astype(np.int64), a[:, 1:4], a[:, 4].astype(np.int64))
    return out


def fresh_rows(db_path: str | Path, after_ms: int = 0) -> dict[str, int]:
    """Complete (V, I and T present) and fresh (not STALE) rows stored so far per cell id, newer than
    ``after_ms``: what the served-value checks count, read while the agent runs (WAL readers)."""
    if not Path(db_path).exists():
        return {}
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return dict(
            db.execute(
                "SELECT c.id, count(*) FROM readings r JOIN cells c ON c.idx = r.cell "
                "WHERE (r.flags & ?) = 0 AND r.ts_ms > ? GROUP BY c.id",
                (int(Flag.STALE) | 7, after_ms),
            ).fetchall()
        )
    except sqlite3.OperationalError:  # the agent has not made its tables yet
        return {}
    finally:
        db.close()


def every_cell_has(db_path: str | Path, cells: int, rows: int, after_ms: int = 0) -> bool:
    got = fresh_rows(db_path, after_ms)
    return len(got) >= cells and min(got.values()) >= rows


def event_kinds(db_path: str | Path) -> list[str]:
    return [e["kind"] for e in stored_events(db_path)] if Path(db_path).exists() else []


def stored_events(db_path: str | Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(str(db_path))
    try:
        return [
            dict(zip(("kind", "level", "source", "cell", "message", "data"), r))
            for r in db.execute("SELECT kind, level, source, cell, message, data FROM events ORDER BY seq")
        ]
    finally:
        db.close()


def match_served(
    ts_ms: np.ndarray,
    values: np.ndarray,
    served_ts: np.ndarray,
    served: np.ndarray,
    rig_cell: int,
    tol: dict[str, float],
    window_ms: float,
    fields=FIELDS,
) -> list[str]:
    """Every stored value must equal (within ``tol``) a value the emulator served for that cell in the
    ``window_ms`` before the row's time stamp. Returns the mismatches (empty = all good)."""
    bad = []
    for r in range(len(ts_ms)):
        near = (served_ts >= ts_ms[r] - window_ms) & (served_ts <= ts_ms[r] + 100)
        if not near.any():
            bad.append(f"row at {ts_ms[r]}: no served sample in the window (history too short?)")
            continue
        for f in fields:
            k = FIELDS.index(f)
            v = values[r, k]
            if np.isnan(v):
                bad.append(f"row at {ts_ms[r]}: {f} is NaN")
                continue
            err = np.min(np.abs(served[near, rig_cell, k] - v))
            if err > tol[f] + 1e-9:
                bad.append(f"row at {ts_ms[r]}: {f} = {v!r}, nearest served differs by {err:.6g} > {tol[f]:g}")
    return bad


class EventLog:
    """A driver context's event sink for tests that run a driver without the agent."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, e: Event) -> None:
        self.events.append(e)

    def kinds(self, device: str | None = None) -> list[str]:
        return [e.kind for e in self.events if device is None or e.data.get("device") == device]

    def of(self, kind: str, device: str | None = None) -> list[Event]:
        return [e for e in self.events if e.kind == kind and (device is None or e.data.get("device") == device)]


async def collect(driver, seconds: float, on_batch: Callable | None = None) -> list:
    """Read batches from an opened driver for ``seconds``."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        b = await driver.read()
        if len(b):
            out.append(b)
            if on_batch is not None:
                on_batch(b)
    return out


async def read_until(driver, cond: Callable[[], bool], timeout_s: float, what: str) -> list:
    """Keep reading an opened driver (drivers that poll inside ``read``) until ``cond()`` holds."""
    out = []
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        b = await driver.read()
        if len(b):
            out.append(b)
    return out


async def read_until_batch(driver, pred: Callable[[Any], bool], timeout_s: float, what: str) -> list:
    """Read until a batch (an empty one too) satisfies ``pred``; returns the non-empty batches read."""
    out: list = []
    end = time.monotonic() + timeout_s
    while True:
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        b = await driver.read()
        if len(b):
            out.append(b)
        if pred(b):
            return out


def until_cells(cells: set[str]) -> Callable[[Any], bool]:
    """A ``read_until_batch`` condition: every one of ``cells`` has appeared in some batch read so far."""
    seen: set[str] = set()

    def pred(b: Any) -> bool:
        seen.update(b.cells[i] for i in np.unique(b.cell))
        return cells <= seen

    return pred


async def wait_for(cond: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.05) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(step_s)
