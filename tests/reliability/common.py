"""Helpers for the reliability suite: what the store committed, what the broker received, and the verdict."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from tests.conftest import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "reliability"


def committed_max_seq(db_path: str | Path) -> int:
    """Highest reading seq the store has committed (read through SQLite, as another process would)."""
    for _ in range(50):
        try:
            db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
            row = db.execute("SELECT value FROM meta WHERE key='next_seq.readings'").fetchone()
            db.close()
            return int(row[0]) - 1 if row else 0
        except sqlite3.OperationalError:
            time.sleep(0.1)
    raise AssertionError(f"cannot read {db_path}")


def committed_seqs(db_path: str | Path) -> set[int]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    out = {r[0] for r in db.execute("SELECT seq FROM readings")}
    db.close()
    return out


def missing(seqs: list[int], upto: int, first: int = 1) -> list[int]:
    return sorted(set(range(first, upto + 1)) - set(seqs))


def report(name: str, **figures) -> dict:
    """Write a test's figures (duplicates, kills, ...) to test-artifacts/reliability/<name>.json and return them."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str))
    print(f"{name}: {figures}")
    return figures


def duplicates(seqs: list[int]) -> int:
    return len(seqs) - len(set(seqs))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def soak_factor() -> int:
    return int(os.environ.get("BATTERY_TWIN_SOAK", "0") or 0)
