"""``battery-twin doctor [--config FILE]``: check an installation and say how to fix what is wrong.

One line per check: ``OK``/``WARN``/``FAIL``, what was found, and for anything not OK the fix. Exit 1 when any
check fails (warnings alone exit 0), 2 when the command itself is misused. Checks, in order: the config; the TLS
files (readable, key mode, key matches cert, cert dates, CA bundle); the endpoint (DNS, a TLS handshake with the
client certificate); each driver's device (the driver's own ``doctor()`` hook, else generic probes); ``[remote]``
(shadow outcome, installed models); the store (integrity, disk space); the clock. Nothing here prints key material: keys are loaded only to compare public keys.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agent.logs import redact
from drivers.base import Check

SERVICE_CONFIG = Path("/etc/battery-twin/config.toml")
LABEL = {"ok": "OK  ", "warn": "WARN", "fail": "FAIL"}


def ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def warn(name: str, detail: str, fix: str) -> Check:
    return Check(name, "warn", detail, fix)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, "fail", detail, fix)


def run_with_timeout(fn: Callable[[], Any], timeout_s: float) -> Any:
    """Run ``fn`` in a daemon thread; TimeoutError if it takes longer (a hung probe cannot block doctor's exit)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result["error"] = exc

    t = threading.Thread(target=target, daemon=True, name="doctor-probe")
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise TimeoutError(f"no result within {timeout_s:.0f} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def format_check(c: Check) -> str:
    line = f"{LABEL.get(c.status, c.status.upper()[:4])}  {c.name:<22} {c.detail}"
    if c.fix and c.status != "ok":
        line += f"  -> fix: {c.fix}"
    return redact(" ".join(line.split("\n")))


def resolve_config_path(arg: str | None) -> tuple[str | None, str]:
    """The file doctor checks: --config, else $BATTERY_TWIN_CONFIG, else the service's, else the default."""
    if arg:
        return arg, "--config"
    env = os.environ.get("BATTERY_TWIN_CONFIG")
    if env:
        return env, "$BATTERY_TWIN_CONFIG"
    if SERVICE_CONFIG.exists():
        return str(SERVICE_CONFIG), "the service's config"
    return None, "no --config, no $BATTERY_TWIN_CONFIG, no /etc/battery-twin/config.toml"


def run_checks(config_path: str | None, emit: Callable[[Check], None]) -> list[Check]:
    """Run every check, handing each result to ``emit`` as soon as it is known; returns them all."""
    from agent.config import ConfigError, load_config
    from agent.doctor import devices, system, tls
    from agent.remote.doctor import check_remote

    results: list[Check] = []

    def out(checks: Iterable[Check]) -> None:
        for c in checks:
            results.append(c)
            emit(c)

    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        out(
            [
                fail(
                    "config",
                    f"{len(exc.problems)} problem(s) in {exc.source}: " + "; ".join(exc.problems),
                    f"edit {exc.source}; `battery-twin config check {exc.source}` lists every problem",
                )
            ]
        )
        out(system.check_clock(None))
        return results
    drivers = [d for d in cfg.drivers if d.enabled]
    out(
        [
            ok(
                "config",
                f"{config_path or '<default>'} is valid: rig {cfg.rig}, {len(drivers)} driver(s) "
                f"({', '.join(d.name for d in drivers) or 'none'}), uplink "
                + (f"to {cfg.uplink.endpoint}:{cfg.uplink.port}" if cfg.uplink.enabled else "off"),
            )
        ]
    )
    if cfg.uplink.enabled:
        out(tls.check_uplink(cfg.uplink))
    else:
        out(
            [
                warn(
                    "uplink",
                    "off (no uplink.endpoint): readings accumulate in the store and are not published",
                    "set [uplink] endpoint, cert, key and ca (see the comments in the config template)",
                )
            ]
        )
    out(devices.check_drivers(drivers))
    out(check_remote(cfg))
    store_checks, store_info = system.check_store(cfg.store)
    out(store_checks)
    out(system.check_clock(store_info))
    return results


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor",
        help="check config, certificates, endpoint, devices, store and clock; "
        "one line per check with a fix (exit 1 if any check fails)",
    )
    p.add_argument(
        "--config",
        "-c",
        help="TOML config file (default: $BATTERY_TWIN_CONFIG, else "
        f"{SERVICE_CONFIG} if it exists, else the embedded default)",
    )
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    path, why = resolve_config_path(args.config)
    print(f"battery-twin doctor: checking {path or 'the embedded default config'} ({why}) as uid {os.geteuid()}")
    sys.stdout.flush()

    def emit(c: Check) -> None:
        print(format_check(c), flush=True)

    results = run_checks(path, emit)
    failed = [c for c in results if c.status == "fail"]
    warned = [c for c in results if c.status == "warn"]
    print(
        f"{len(results)} checks: {len(results) - len(failed) - len(warned)} ok, {len(warned)} warning(s), "
        f"{len(failed)} failed" + (f" ({', '.join(c.name for c in failed)})" if failed else "")
    )
    return 1 if failed else 0
