"""Doctor checks for each driver's device: the driver's own ``doctor()`` hook, else generic probes.

Generic probes read well-known fields anywhere in a driver section (nested tables and arrays of tables too, such
as a Modbus driver's devices): a ``/dev/...`` path, or an absolute path under ``port``/``rtu``/``device``, is a
serial device (opened and closed again, non-blocking, without reading); ``channel`` with an ``interface`` of
``socketcan`` is a CAN network interface; ``host`` (with an integer ``port``, default 502) or ``tcp = "host:port"``
is a TCP peer such as a Modbus server. Every device is probed once; every probe runs with a time limit.
"""

from __future__ import annotations

import errno
import functools
import grp
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.doctor import fail, ok, run_with_timeout, warn
from drivers.base import Check, DriverConfig
from drivers.registry import get_driver_class

PROBE_TIMEOUT_S = 8.0
TCP_TIMEOUT_S = 3.0
MODBUS_TCP_PORT = 502
SERVICE_GROUPS = ("dialout",)  # the unit's SupplementaryGroups=


def check_serial(name: str, path: str) -> Check:
    p = Path(path)
    if not p.exists():
        return fail(
            name,
            f"{path} does not exist",
            "plug the adapter in and check `ls -l /dev/serial/by-id/`; "
            "prefer a /dev/serial/by-id/... path, which survives re-plugging",
        )
    st = p.stat()
    if not stat.S_ISCHR(st.st_mode):
        return fail(name, f"{path} is not a character device", "point the driver at the serial device node")
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    mode = stat.S_IMODE(st.st_mode)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        os.close(fd)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            return fail(
                name,
                f"{path} (group {group}, mode {mode:04o}) cannot be opened by uid {os.geteuid()}",
                "the service opens it as group dialout: make the device group dialout with mode 0660 "
                "(a udev rule), or add its group to SupplementaryGroups= (systemctl edit battery-twin)",
            )
        if exc.errno == errno.EBUSY:
            return warn(name, f"{path} is busy (open elsewhere; the running agent?)", "stop whatever else uses it")
        return fail(name, f"{path} cannot be opened: {exc.strerror}", "check the adapter and its kernel driver")
    world_rw = (mode & 0o006) == 0o006
    if group not in SERVICE_GROUPS and not world_rw:
        return warn(
            name,
            f"{path} opens, but it belongs to group {group} (mode {mode:04o}): the service has only dialout",
            f"add SupplementaryGroups={group} (systemctl edit battery-twin) or a udev rule "
            "giving the device group dialout",
        )
    return ok(name, f"{path} opens (group {group}, mode {mode:04o})")


def check_socketcan(name: str, channel: str) -> Check:
    sysfs = Path("/sys/class/net") / channel
    if not sysfs.exists():
        return fail(
            name,
            f"CAN interface {channel} does not exist",
            "load the adapter's driver and bring it up: "
            f"ip link set {channel} up type can bitrate 500000 (or a systemd-networkd .network file)",
        )
    state = (sysfs / "operstate").read_text().strip() if (sysfs / "operstate").exists() else "unknown"
    try:
        with socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW) as s:
            s.bind((channel,))
    except OSError as exc:
        return fail(name, f"cannot bind a CAN socket to {channel}: {exc.strerror}", "check the interface")
    if state not in ("up", "unknown"):
        return fail(name, f"CAN interface {channel} is {state}", f"ip link set {channel} up type can bitrate 500000")
    return ok(name, f"CAN interface {channel} is {state}")


def check_tcp(name: str, host: str, port: int) -> Check:
    try:
        with socket.create_connection((host, port), timeout=TCP_TIMEOUT_S):
            pass
    except socket.gaierror as exc:
        return fail(name, f"{host} does not resolve ({exc})", "check the driver's host setting and DNS")
    except ConnectionRefusedError:
        return fail(name, f"{host}:{port} refused the connection", "is the device's server enabled on that port?")
    except TimeoutError:
        return fail(
            name,
            f"no answer from {host}:{port} within {TCP_TIMEOUT_S:.0f} s",
            "check the device is powered and on this network (ping it), and any firewall in between",
        )
    except OSError as exc:
        return fail(name, f"cannot reach {host}:{port}: {exc.strerror or exc}", "check the network route")
    return ok(name, f"{host}:{port} accepts TCP connections")


SERIAL_KEYS = ("port", "device", "serial_port", "tty", "rtu")


def _nodes(values: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every table of a driver section with its dotted path: the section, nested tables, arrays of tables
    (e.g. the devices of a Modbus driver)."""
    yield path, values
    for k, v in values.items():
        sub = f"{path}.{k}" if path else k
        if isinstance(v, dict):
            yield from _nodes(v, sub)
        elif isinstance(v, list):
            for i, item in enumerate(v):
                if isinstance(item, dict):
                    yield from _nodes(item, f"{sub}[{i}]")


def _host_port(text: str) -> tuple[str, int] | None:
    """'host:port' or '[v6]:port'; None if it is not one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def generic_checks(dcfg: DriverConfig) -> list[Check]:
    """Probes for the usual fields, wherever they sit in the section; each device path or endpoint once."""
    base = f"driver.{dcfg.name}"
    checks: list[Check] = []
    seen: set[object] = set()
    for path, node in _nodes(dcfg.model_dump(mode="json")):
        prefix = f"{base}.{path}." if path else f"{base}."
        for key, v in node.items():
            if not isinstance(v, str) or not v:
                continue
            if v.startswith("/dev/") or (key in SERIAL_KEYS and v.startswith("/")):
                if v not in seen:
                    seen.add(v)
                    checks.append(check_serial(prefix + key, v))
            elif key == "host" or (key == "tcp" and _host_port(v)):
                port = node.get("port")
                port = port if isinstance(port, int) else MODBUS_TCP_PORT
                host, port = _host_port(v) if key == "tcp" else (v, port)  # type: ignore[misc]
                if (host, port) not in seen:
                    seen.add((host, port))
                    checks.append(check_tcp(prefix + key, host, port))
        channel, interface = node.get("channel"), str(node.get("interface") or node.get("bustype") or "")
        if isinstance(channel, str) and channel and not channel.startswith("/"):
            if interface == "socketcan":
                checks.append(check_socketcan(prefix + "channel", channel))
            elif interface == "virtual":
                checks.append(ok(prefix + "channel", f"virtual CAN bus {channel!r}: in-process, nothing to reach"))
            else:
                checks.append(
                    warn(
                        prefix + "channel",
                        f"CAN interface {interface or '?'} channel {channel}: not probed by doctor",
                        "check the adapter with candump (can-utils)",
                    )
                )
    return checks


def _driver_checks(dcfg: DriverConfig) -> list[Check]:
    own = get_driver_class(dcfg.type).doctor(dcfg)
    checks = list(own) if own is not None else generic_checks(dcfg)
    return checks or [ok(f"driver.{dcfg.name}", f"{dcfg.type}: no device to reach")]


def check_drivers(drivers: list[DriverConfig]) -> list[Check]:
    if not drivers:
        return [warn("drivers", "no driver enabled: the agent only drains its store", "add a [[drivers]] section")]
    out: list[Check] = []
    for dcfg in drivers:
        try:
            out += run_with_timeout(functools.partial(_driver_checks, dcfg), PROBE_TIMEOUT_S)
        except TimeoutError:
            out.append(
                fail(
                    f"driver.{dcfg.name}",
                    f"the device check did not finish within {PROBE_TIMEOUT_S:.0f} s",
                    "the device or its bus hangs: check wiring and power",
                )
            )
        except Exception as exc:  # noqa: BLE001 - a driver's hook must not crash doctor
            out.append(
                fail(
                    f"driver.{dcfg.name}",
                    f"the device check raised {exc!r}"[:300],
                    "report this as a bug of the driver's doctor() hook",
                )
            )
    return out
