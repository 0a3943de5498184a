"""Opening the store (issue 14.3 and the store's items of 14's "low" list): only real corruption is moved aside.

A store that is locked, read-only for the service user or at a path that cannot be opened keeps its unsent
readings where they are: the open is retried (a lock may clear), then refused with ``StoreUnavailable`` (exit
code 3), and ``doctor`` names the cause. A seq hint that is not a plausible seq is ignored, not a crash loop;
a ``#`` in the path does not turn a read-only connection into a read-write one on another file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.config import StoreConfig
from agent.doctor.storeprobe import probe
from agent.doctor.system import check_store
from agent.store import OpenPolicy, Store, StoreUnavailable
from agent.store.db import readonly_uri
from agent.store.schema import SCHEMA_VERSION
from drivers.base import ReadingBatch
from tests.conftest import agent_config

NOBODY = 65534


def batch(ticks: int = 10) -> ReadingBatch:
    cells = ("a", "b", "c")
    n = len(cells)
    return ReadingBatch.build(
        cells,
        np.tile(np.arange(n), ticks),
        np.repeat(1_700_000_000_000 + 100 * np.arange(ticks), n),
        np.full(n * ticks, 3.7),
        np.full(n * ticks, 1.0),
        np.full(n * ticks, 25.0),
    )


def fast(sleeps: list[float]) -> OpenPolicy:
    return OpenPolicy(attempts=3, busy_timeout_s=0.2, sleep=sleeps.append)


def unsent(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(readonly_uri(path), uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM readings WHERE sent=0").fetchone()[0])


def store_with_data(path: Path) -> None:
    s = Store.open(path)
    s.append(batch())
    s.close()


@contextlib.contextmanager
def lock_holder(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the store with an exclusive lock (as a stray sqlite3 shell or a second agent)."""
    code = textwrap.dedent(
        """
        import sqlite3, sys
        c = sqlite3.connect(sys.argv[1], isolation_level=None)
        c.execute("PRAGMA locking_mode=EXCLUSIVE")
        c.execute("BEGIN EXCLUSIVE")
        print("locked", flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def test_a_locked_store_is_retried_refused_and_left_in_place(tmp_path):
    db = tmp_path / "s.db"
    store_with_data(db)
    with lock_holder(db) as holder:
        sleeps: list[float] = []
        with pytest.raises(StoreUnavailable, match="locked") as err:
            Store.open(db, policy=fast(sleeps))
        assert len(sleeps) == 2 and all(s > 0 for s in sleeps)  # a lock may clear: retried with backoff
        assert "doctor" in str(err.value)
        assert db.exists() and not list(tmp_path.glob("s.db.corrupt-*")), "a healthy store was moved aside"
        info = probe(db)
        assert info["unusable"] and [h["pid"] for h in info["locks"]] == [holder.pid]
        checks, _ = check_store(StoreConfig(path=db))
        [integrity] = [c for c in checks if c.name == "store.integrity"]
        assert integrity.status == "fail" and f"locked by pid {holder.pid}" in integrity.detail
        assert f"-p {holder.pid}" in integrity.fix and "exit code 3" in integrity.fix
    s = Store.open(db)  # the lock is gone: the same store, its unsent readings, no event
    assert s.opened == [] and unsent(db) == 30 and s.append(batch(1)) == (31, 33)
    s.close()


def test_a_path_that_cannot_be_opened_is_refused_at_once_and_left_alone(tmp_path):
    db = tmp_path / "s.db"
    db.mkdir()  # e.g. a volume mounted at the wrong place
    (db / "keep").write_text("x")
    sleeps: list[float] = []
    with pytest.raises(StoreUnavailable, match="SQLITE_CANTOPEN"):
        Store.open(db, policy=fast(sleeps))
    assert len(sleeps) == 1  # one more try: waiting does not make a folder a database
    assert (db / "keep").read_text() == "x" and not list(tmp_path.glob("s.db.corrupt-*"))


def test_the_agent_exits_3_with_a_clear_error_for_an_unusable_store(tmp_path, agent_proc):
    cfg = agent_config(tmp_path, None, None, None)
    db = Path(cfg["store"]["path"])
    db.mkdir(parents=True)
    agent = agent_proc(cfg).start()
    assert agent.proc.wait(60) == 3, agent.log()[-2000:]
    log = agent.log()
    assert "cannot be used" in log and "battery-twin doctor" in log and "Traceback" not in log
    assert db.is_dir() and not list(db.parent.glob("agent.db.corrupt-*"))


@pytest.fixture()
def service_dir() -> Iterator[Path]:
    """A folder owned by the service user (nobody here), like /var/lib/battery-twin."""
    base = Path(tempfile.mkdtemp(prefix="store-open-"))
    os.chmod(base, 0o755)
    d = base / "state"
    d.mkdir()
    os.chown(d, NOBODY, NOBODY)
    yield d
    shutil.rmtree(base, ignore_errors=True)


def open_as_service_user(db: Path) -> dict[str, object]:
    """Store.open in a forked child that has dropped to the service user (the interpreter under /root is not
    executable by nobody, so no fresh process)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            policy = OpenPolicy(attempts=2, busy_timeout_s=0.2, sleep=lambda s: None)
            try:
                result: dict[str, object] = {"opened": [e.kind for e in Store.open(db, policy=policy).opened]}
            except StoreUnavailable as exc:
                result = {"unavailable": str(exc)}
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            result = {"error": repr(exc)}
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return json.loads(out)


@pytest.mark.parametrize("left_open", [False, True], ids=["closed", "killed"])
def test_a_store_left_owned_by_root_is_refused_not_quarantined(service_dir, left_open):
    """Someone ran the agent once with sudo: the store (and, if it was killed, its -wal/-shm) belong to root."""
    assert os.geteuid() == 0, "this test plays root and the service user"
    db = service_dir / "agent.db"
    store_with_data(db)
    holder = None
    if left_open:  # root's agent still has it open (or died with it open): root-owned -wal and -shm
        holder = sqlite3.connect(db)
        holder.execute("SELECT count(*) FROM readings").fetchone()
    try:
        result = open_as_service_user(db)
        assert "unavailable" in result, result
        assert "READONLY" in str(result["unavailable"]) or "readonly" in str(result["unavailable"])
        assert db.exists() and unsent(db) == 30 and not list(service_dir.glob("agent.db.corrupt-*"))
        checks, _ = check_store(StoreConfig(path=db))
        [access] = [c for c in checks if c.name == "store.access"]
        assert access.status == "fail" and "owned by root mode 0644" in access.detail
        assert access.fix.startswith(f"chown nobody: {db}*")
    finally:
        if holder is not None:
            holder.close()


def test_a_seq_hint_beyond_any_seq_is_ignored_not_a_crash_loop(tmp_path):
    db = tmp_path / "s.db"
    store_with_data(db)
    hint = Path(str(db) + ".seq")
    hint.write_text(json.dumps({"readings": 2**64, "events": "9", "cycles": 1.5}))
    s = Store.open(db)  # used to raise OverflowError at every start
    assert s.opened == [] and s.append(batch(1)) == (31, 33)
    s.close()
    db.write_bytes(b"garbage" * 100)  # and on the quarantine path too
    hint.write_text(json.dumps({"readings": 2**63 + 5}))
    s = Store.open(db, clock_ms=lambda: 1_000)
    assert [e.kind for e in s.opened] == ["store.quarantined"]
    first, _ = s.append(batch(1))
    assert first == 1_000 * 1000  # the clock floor (the hint was ignored); far below SQLite's integer limit
    s.close()


def test_a_hash_in_the_path_keeps_the_old_store_read_only_and_seq_unique(tmp_path):
    folder = tmp_path / "rig#1 ?x=%41"
    folder.mkdir()
    db = folder / "s.db"
    s = Store.open(db, clock_ms=lambda: 0)
    for _ in range(50):
        s.append(batch(100))  # seq 1..15000
    s.conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (SCHEMA_VERSION + 1,))
    s.close()
    Path(str(db) + ".seq").unlink()  # only the old database itself knows how far seq went
    before = sorted(p.name for p in tmp_path.iterdir())
    s2 = Store.open(db, clock_ms=lambda: 0)
    assert [e.kind for e in s2.opened] == ["store.quarantined"]  # newer schema: moved aside, read read-only
    assert s2.append(batch(1))[0] > 15_000, "seq reused: the old store's counters were not read"
    s2.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a stray database appeared beside the folder"
    with (
        contextlib.closing(sqlite3.connect(readonly_uri(db), uri=True)) as ro,
        pytest.raises(sqlite3.OperationalError, match="readonly"),
    ):
        ro.execute("CREATE TABLE x(a)")


def test_corruption_is_still_moved_aside_at_once(tmp_path):
    db = tmp_path / "s.db"
    db.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    sleeps: list[float] = []
    s = Store.open(db, policy=fast(sleeps))
    assert [e.kind for e in s.opened] == ["store.quarantined"] and sleeps == []
    assert len(list(tmp_path.glob("s.db.corrupt-*"))) == 1
    s.close()
