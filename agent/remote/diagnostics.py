"""The ``diagnostics`` job: a redacted bundle (gzip'd JSON) PUT to the presigned URL the job document carries.

What goes in: the running config with every secret shown as ``**********``, the health message, the last log lines
(already redacted by the log formatter: no key material), store figures, and the doctor checks that do not touch
devices (the agent has them open; their state is in health). Nothing in it is a private key, token or password.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import platform
import sqlite3
import time
from pathlib import Path
from typing import Any

from agent import __version__
from agent.control import AgentControl
from agent.health import RateMeter
from agent.logs import recent_lines, redact
from agent.remote.config import RemoteConfig
from agent.remote.signing import VerifyError
from agent.remote.transfer import upload
from agent.remote.update import Outcome
from agent.store.stats import store_stats

MAX_BUNDLE_BYTES = 5 * 1024**2


def _store_figures(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        return dict(store_stats(conn, time.time_ns() // 1_000_000))
    finally:
        conn.close()


def _doctor(control: AgentControl) -> list[dict[str, str]]:
    from agent.doctor import system, tls
    from agent.remote.doctor import check_remote

    cfg = control.cfg
    checks = list(tls.check_uplink(cfg.uplink)) if cfg.uplink.enabled else []
    store_checks, info = system.check_store(cfg.store)
    checks += store_checks + system.check_clock(info) + check_remote(cfg)
    return [{"name": c.name, "status": c.status, "detail": c.detail, "fix": c.fix} for c in checks]


def bundle(control: AgentControl, lines: int) -> bytes:
    """The diagnostics bundle (blocking: run it in a thread)."""
    cfg = control.cfg
    doc: dict[str, Any] = {"rig": cfg.rig, "version": __version__, "ts": time.time_ns() // 1_000_000}
    doc["host"] = {"python": platform.python_version(), "machine": platform.machine(), "system": platform.platform()}
    doc["config"] = cfg.model_dump(mode="json", by_alias=True, serialize_as_any=True)
    for key, fn in (
        ("store", lambda: _store_figures(cfg.store.path)),
        ("doctor", lambda: _doctor(control)),
    ):
        try:
            doc[key] = fn()
        except Exception as exc:  # noqa: BLE001 - a part that cannot be read is reported in the bundle
            doc[key] = {"error": repr(exc)[:500]}
    try:
        doc["health"] = control.health(doc["store"], RateMeter()) if "error" not in doc["store"] else None
    except Exception as exc:  # noqa: BLE001
        doc["health"] = {"error": repr(exc)[:500]}
    doc["log"] = recent_lines()[-lines:]
    text = redact(json.dumps(doc, default=str))
    return gzip.compress(text.encode(), mtime=0)


async def run(control: AgentControl, cfg: RemoteConfig, doc: dict[str, Any]) -> Outcome:
    url = doc.get("upload_url")
    if not isinstance(url, str):
        return Outcome("FAILED", {"reason": "malformed", "detail": "the job document needs upload_url"})
    lines = doc.get("log_lines", 500)
    lines = max(1, min(int(lines), 5000)) if isinstance(lines, int) and not isinstance(lines, bool) else 500
    data = await asyncio.to_thread(bundle, control, lines)
    if len(data) > MAX_BUNDLE_BYTES:
        return Outcome("FAILED", {"reason": "oversize", "detail": f"the bundle is {len(data)} bytes"})
    try:
        await asyncio.to_thread(upload, url, data, "application/gzip", cfg)
    except VerifyError as exc:
        return Outcome("FAILED", {"reason": exc.reason, "detail": str(exc)[:1000]})
    return Outcome("SUCCEEDED", {"bytes": str(len(data))})
