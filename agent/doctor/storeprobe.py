"""Read-only look at a store for doctor: integrity, schema version, backlog, and when it cannot be used, why:
owner and mode of the file and its folder, and which process holds a lock on it (``python -m
agent.doctor.storeprobe PATH`` prints it as JSON).

Lock holders come from ``fcntl(F_GETLK)`` on the byte ranges SQLite locks (the database file's lock bytes at
1 GiB, the ``-shm`` file's WAL locks), the kernel's own answer, so no guessing from ``/proc``. The probe opens
nothing for writing and takes no lock itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import sqlite3
import stat
import struct
import sys
import time
from pathlib import Path
from typing import Any

from agent.store.db import describe, readonly_uri

PENDING_BYTE = 0x40000000  # SQLite's rollback-journal lock bytes: pending, reserved, then 510 shared bytes
WAL_LOCKS = (120, 9)  # -shm: write, checkpoint, recover, 5 read locks, and the "DMS" byte every user holds
_FLOCK = "hhqqi4x"  # struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid (64-bit off_t)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _holder(path: Path, start: int, length: int) -> int | None:
    """Pid of a process holding any lock that overlaps [start, start + length) of ``path``, if one does."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        req = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
        l_type, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, req))
        return int(pid) if l_type != fcntl.F_UNLCK and pid > 0 else None
    except OSError:
        return None
    finally:
        os.close(fd)


def lock_holders(path: str | Path) -> list[dict[str, Any]]:
    """Processes holding SQLite locks on the store (its file or its WAL index)."""
    p = Path(path)
    out: dict[int, dict[str, Any]] = {}
    for target, start, length in ((p, PENDING_BYTE, 512), (Path(str(p) + "-shm"), *WAL_LOCKS)):
        pid = _holder(target, start, length)
        if pid is not None and pid not in out:
            out[pid] = {"pid": pid, "comm": _comm(pid), "file": target.name}
    return list(out.values())


def access(path: str | Path) -> dict[str, Any]:
    """Owner and mode of the store's files and folder; the folder's owner is whom the agent runs as."""
    p = Path(path)
    info: dict[str, Any] = {}
    try:
        d = p.parent.stat()
        info["dir"] = {"owner": _user(d.st_uid), "uid": d.st_uid, "mode": f"{stat.S_IMODE(d.st_mode):04o}"}
    except OSError as exc:
        info["dir"] = {"error": exc.strerror}
        return info
    files = []
    for f in (p, Path(str(p) + "-wal"), Path(str(p) + "-shm")):
        try:
            st = f.lstat()
        except FileNotFoundError:
            continue
        kind = "folder" if stat.S_ISDIR(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else "file"
        files.append(
            {"name": f.name, "kind": kind, "owner": _user(st.st_uid), "uid": st.st_uid,
             "mode": f"{stat.S_IMODE(st.st_mode):04o}"}
        )  # fmt: skip
    info["files"] = files
    info["foreign"] = [f["name"] for f in files if f["uid"] != d.st_uid or f["kind"] != "file"]
    return info


def probe(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    info: dict[str, Any] = {"access": access(p)}
    try:
        conn = sqlite3.connect(readonly_uri(p), uri=True, timeout=2.0)
    except sqlite3.Error as exc:
        return {**info, "error": f"cannot open: {describe(exc)}", "unusable": True, "locks": lock_holders(p)}
    try:
        conn.execute("PRAGMA query_only=1")
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        info.update({"quick_check": result, "bytes": p.stat().st_size})
        if result != "ok":
            return info
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        info["schema_version"] = int(meta.get("schema_version", 0))
        info["unsent_readings"] = conn.execute("SELECT count(*) FROM readings WHERE sent=0").fetchone()[0]
        oldest = conn.execute("SELECT ts_ms FROM readings WHERE sent=0 ORDER BY seq LIMIT 1").fetchone()
        newest = conn.execute("SELECT ts_ms FROM readings ORDER BY seq DESC LIMIT 1").fetchone()
        info["oldest_unsent_age_s"] = (time.time() - oldest[0] / 1000) if oldest else None
        info["newest_ts_ms"] = newest[0] if newest else None
        return info
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        corrupt = code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
        return {
            **info,
            "error": f"{type(exc).__name__}: {describe(exc)}",
            "unusable": not corrupt,
            "locks": lock_holders(p),
        }
    finally:
        conn.close()


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1])))
