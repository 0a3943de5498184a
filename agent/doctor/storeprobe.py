"""Read-only look at a store for doctor: integrity, schema version, backlog (``python -m agent.doctor.storeprobe
PATH`` prints it as JSON)."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any


def probe(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        conn = sqlite3.connect(p, timeout=10.0)
    except sqlite3.Error as exc:
        return {"error": f"cannot open: {exc}", "access": True}
    try:
        conn.execute("PRAGMA query_only=1")
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        info: dict[str, Any] = {"quick_check": result, "bytes": p.stat().st_size}
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
    except sqlite3.OperationalError as exc:
        access = "unable to open" in str(exc) or "readonly" in str(exc)
        return {"error": f"{type(exc).__name__}: {exc}", "access": access}
    except sqlite3.Error as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1])))
