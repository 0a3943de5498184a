"""Doctor checks for the host: the store (integrity, backlog, disk space) and the clock.

The store is probed with the database file owner's effective uid when doctor runs as root: SQLite creates
``-wal``/``-shm`` files beside a WAL database even for readers, and root-owned ones would lock the service user out
of its own store.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as dt
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.config import StoreConfig
from agent.doctor import fail, ok, warn
from agent.doctor.storeprobe import probe
from drivers.base import Check

MIN_FREE_BYTES = 100 * 1024**2  # below this the store cannot take a burst; SQLITE_FULL drops readings
CLOCK_FLOOR = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)  # a clock before this was never set
FUTURE_TOLERANCE_S = 300.0
BACKLOG_WARN_S = 3600.0
TIME_ERROR = 5  # adjtimex(2): the kernel's clock is not synchronised (STA_UNSYNC)


@contextlib.contextmanager
def _as_owner(path: Path) -> Iterator[None]:
    """Run the block with the effective uid/gid of ``path``'s owner when we are root (and it is not)."""
    st = path.stat()
    if os.geteuid() != 0 or st.st_uid == 0:
        yield
        return
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(st.st_gid)
    os.seteuid(st.st_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


def _probe_as_owner(path: Path) -> dict[str, Any]:
    with _as_owner(path):
        return probe(path)


def check_store(scfg: StoreConfig) -> tuple[list[Check], dict[str, Any]]:
    path = scfg.path
    out: list[Check] = []
    info: dict[str, Any] = {}
    if not path.exists():
        anc = next((p for p in path.parents if p.exists()), Path("/"))
        out.append(
            ok(
                "store.integrity",
                f"{path} does not exist yet: the agent creates it at start"
                + ("" if anc == path.parent else f" (and {path.parent})"),
            )
        )
    else:
        info = _probe_as_owner(path)
        if info.get("unusable"):
            out.append(fail("store.integrity", f"{path}: {info['error']}{_cause(info)}", _unusable_fix(path, info)))
        elif "error" in info:
            out.append(
                fail(
                    "store.integrity",
                    f"{path}: {info['error']}",
                    "the agent moves a corrupt store "
                    "aside at start and begins a fresh one (event store.quarantined): systemctl restart "
                    "battery-twin; or move it aside yourself",
                )
            )
        elif info["quick_check"] != "ok":
            out.append(
                fail(
                    "store.integrity",
                    f"{path} fails PRAGMA quick_check: {info['quick_check']}",
                    "systemctl restart battery-twin: the agent moves a corrupt store aside and starts fresh",
                )
            )
        else:
            detail = (
                f"{path} passes quick_check, schema v{info['schema_version']}, {info['bytes'] / 1e6:.1f} MB, "
                f"{info['unsent_readings']} unsent readings"
            )
            age = info.get("oldest_unsent_age_s")
            if age is not None and age > BACKLOG_WARN_S:
                out.append(
                    warn(
                        "store.integrity",
                        f"{detail}, the oldest waiting {age / 3600:.1f} h",
                        "the uplink is not draining: see the endpoint checks and journalctl -u battery-twin",
                    )
                )
            else:
                out.append(ok("store.integrity", detail))
        foreign = info.get("access", {}).get("foreign")
        if foreign:
            out.append(fail("store.access", f"{path}: {_cause(info).lstrip('; ')}", _unusable_fix(path, info)))
    out.append(_check_disk(scfg, info.get("bytes", 0)))
    return out, info


def _cause(info: dict[str, Any]) -> str:
    """Who holds the store and who owns it, in words (issue 14.3: doctor names the cause)."""
    parts = [f"locked by pid {h['pid']} ({h['comm']}, on {h['file']})" for h in info.get("locks", [])]
    acc = info.get("access", {})
    d = acc.get("dir", {})
    for f in acc.get("files", []):
        if f["name"] in acc.get("foreign", []):
            what = f"a {f['kind']}" if f["kind"] != "file" else f"owned by {f['owner']} mode {f['mode']}"
            parts.append(f"{f['name']} is {what}, but its folder (the agent's) belongs to {d.get('owner')}")
    return ("; " + "; ".join(parts)) if parts else ""


def _unusable_fix(path: Path, info: dict[str, Any]) -> str:
    if info.get("locks"):
        pids = " ".join(str(h["pid"]) for h in info["locks"])
        return (
            f"another process holds the store (ps -o pid,user,cmd -p {pids}); stop it: the agent refuses to start "
            "while it does (exit code 3) and never moves a locked store aside"
        )
    acc = info.get("access", {})
    if acc.get("foreign"):
        owner = acc.get("dir", {}).get("owner", "battery-twin")
        return f"chown {owner}: {path}* (someone ran the agent as another user, e.g. with sudo)"
    return (
        f"the store's owner (uid {path.stat().st_uid}) must be able to reach and write {path.parent}: check "
        "`namei -l` on the path"
    )


def _check_disk(scfg: StoreConfig, db_bytes: int) -> Check:
    anc = next((p for p in [scfg.path.parent, *scfg.path.parents] if p.exists()), Path("/"))
    usage = shutil.disk_usage(anc)
    free, cap = usage.free, scfg.max_bytes
    detail = f"{free / 1e9:.2f} GB free on the store's file system, store.max_bytes {cap / 1e9:.2f} GB"
    if free < MIN_FREE_BYTES:
        return fail(
            "store.disk",
            detail,
            f"free space on {anc}: below {MIN_FREE_BYTES // 1024**2} MB the store "
            "drops its oldest unsent readings to take new ones",
        )
    if free + db_bytes < cap:
        return warn(
            "store.disk",
            detail + ": the disk fills before the byte cap is reached",
            f"lower store.max_bytes below {(free + db_bytes) * 0.8 / 1e9:.2f} GB or free space",
        )
    return ok("store.disk", detail)


def clock_synchronised() -> bool | None:
    """The kernel's view (adjtimex with no changes): False when NTP has not synchronised the clock."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex is ~208 bytes; modes=0 means read only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return bool(state != TIME_ERROR)


def check_clock(info: dict[str, Any] | None) -> list[Check]:
    now = dt.datetime.now(dt.UTC)
    out: list[Check] = []
    if now < CLOCK_FLOOR:
        out.append(
            fail(
                "clock",
                f"the clock says {now:%Y-%m-%d %H:%M} UTC, before {CLOCK_FLOOR:%Y-%m-%d}: it was "
                "never set; timestamps and TLS certificate checks are wrong",
                "timedatectl set-ntp true (systemd-timesyncd), or add an RTC; check with timedatectl",
            )
        )
    else:
        newest = (info or {}).get("newest_ts_ms")
        ahead = (newest / 1000 - time.time()) if newest else 0.0
        if ahead > FUTURE_TOLERANCE_S:
            out.append(
                warn(
                    "clock",
                    f"the newest stored reading is {ahead:.0f} s in the future: the clock went "
                    "backwards since it was written",
                    "enable NTP (timedatectl set-ntp true); the agent "
                    "flags readings whose time went backwards (CLOCK_ADJUSTED)",
                )
            )
        else:
            out.append(ok("clock", f"{now:%Y-%m-%d %H:%M:%S} UTC"))
    synced = clock_synchronised()
    if synced is False:
        out.append(
            warn(
                "clock.sync",
                "the kernel reports the clock as not synchronised (no NTP)",
                "timedatectl set-ntp true; systemctl status systemd-timesyncd (readings and TLS need a right clock)",
            )
        )
    elif synced:
        out.append(ok("clock.sync", "synchronised (NTP)"))
    else:
        out.append(warn("clock.sync", "cannot ask the kernel whether the clock is synchronised", "timedatectl"))
    return out
