"""Doctor checks for each driver's device: the driver's own ``doctor()`` hook, else generic probes.

Generic probes read well-known fields of a driver section, whatever the driver: any string starting with
``/dev/`` is a serial device (opened and closed again, non-blocking, without reading); ``channel`` with an
``interface`` of ``socketcan`` is a CAN network interface; ``host`` (with an integer ``port``, default 502) is a
TCP peer such as a Modbus server. Every probe runs in a thread with a time limit.
"""
from __future__ import annotations

import errno
import grp
import os
import socket
import stat
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
        return fail(name, f"{path} does not exist", "plug the adapter in and check `ls -l /dev/serial/by-id/`; "
                    "prefer a /dev/serial/by-id/... path, which survives re-plugging")
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
            return fail(name, f"{path} (group {group}, mode {mode:04o}) cannot be opened by uid {os.geteuid()}",
                        "the service opens it as group dialout: make the device group dialout with mode 0660 "
                        "(a udev rule), or add its group to SupplementaryGroups= (systemctl edit battery-twin)")
        if exc.errno == errno.EBUSY:
            return warn(name, f"{path} is busy (open elsewhere; the running agent?)", "stop whatever else uses it")
        return fail(name, f"{path} cannot be opened: {exc.strerror}", "check the adapter and its kernel driver")
    world_rw = (mode & 0o006) == 0o006
    if group not in SERVICE_GROUPS and not world_rw:
        return warn(name, f"{path} opens, but it belongs to group {group} (mode {mode:04o}): the service has "
                    "only dialout", f"add SupplementaryGroups={group} (systemctl edit battery-twin) or a udev rule "
                    "giving the device group dialout")
    return ok(name, f"{path} opens (group {group}, mode {mode:04o})")


def check_socketcan(name: str, channel: str) -> Check:
    sysfs = Path("/sys/class/net") / channel
    if not sysfs.exists():
        return fail(name, f"CAN interface {channel} does not exist", "load the adapter's driver and bring it up: "
                    f"ip link set {channel} up type can bitrate 500000 (or a systemd-networkd .network file)")
    state = (sysfs / "operstate").read_text().strip() if (sysfs / "operstate").exists() else "unknown"
    try:
        with socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW) as s:
            s.bind((channel,))
    except OSError as exc:
        return fail(name, f"cannot bind a CAN socket to {channel}: {exc.strerror}", "check the interface")
    if state not in ("up", "unknown"):
        return fail(name, f"CAN interface {channel} is {state}",
                    f"ip link set {channel} up type can bitrate 500000")
    return ok(name, f"CAN interface {channel} is {state}")


def check_tcp(name: str, host: str, port: int) -> Check:
    try:
        with socket.create_connection((host, port), timeout=TCP_TIMEOUT_S):
            pass
    except socket.gaierror as exc:
        return fail(name, f"{host} does not resolve ({exc})", "check the driver's host setting and DNS")
    except ConnectionRefusedError:
        return fail(name, f"{host}:{port} refused the connection", "is the device's server enabled on that port?")
    except (TimeoutError, socket.timeout):
        return fail(name, f"no answer from {host}:{port} within {TCP_TIMEOUT_S:.0f} s",
                    "check the device is powered and on this network (ping it), and any firewall in between")
    except OSError as exc:
        return fail(name, f"cannot reach {host}:{port}: {exc.strerror or exc}", "check the network route")
    return ok(name, f"{host}:{port} accepts TCP connections")


SERIAL_KEYS = ("port", "device", "serial_port", "tty")


def _dev_paths(values: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """(key, path) of every device path in a driver section: ``/dev/...`` anywhere, or an absolute path under
    a serial-looking key (a udev or socat symlink elsewhere)."""
    out = []
    for k, v in values.items():
        if isinstance(v, str) and (v.startswith("/dev/") or (k in SERIAL_KEYS and v.startswith("/"))):
            out.append((prefix + k, v))
        elif isinstance(v, dict):
            out += _dev_paths(v, f"{prefix}{k}.")
    return out


def generic_checks(dcfg: DriverConfig) -> list[Check]:
    values = dcfg.model_dump(mode="json")
    base = f"driver.{dcfg.name}"
    checks = [check_serial(f"{base}.{key}", path) for key, path in _dev_paths(values)]
    interface = str(values.get("interface") or values.get("bustype") or "")
    channel = values.get("channel")
    if isinstance(channel, str) and channel and not channel.startswith("/"):
        if interface == "socketcan":
            checks.append(check_socketcan(f"{base}.channel", channel))
        elif interface == "virtual":
            checks.append(ok(f"{base}.channel", f"virtual CAN bus {channel!r}: in-process, nothing to reach"))
        else:
            checks.append(warn(f"{base}.channel", f"CAN interface {interface or '?'} channel {channel}: not "
                               "probed by doctor", "check the adapter with candump"))
    host = values.get("host")
    if isinstance(host, str) and host:
        port = values.get("port")
        port = port if isinstance(port, int) else MODBUS_TCP_PORT
        checks.append(check_tcp(f"{base}.host", host, port))
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
            out += run_with_timeout(lambda d=dcfg: _driver_checks(d), PROBE_TIMEOUT_S)
        except TimeoutError:
            out.append(fail(f"driver.{dcfg.name}", f"the device check did not finish within {PROBE_TIMEOUT_S:.0f} "
                            "s", "the device or its bus hangs: check wiring and power"))
        except Exception as exc:  # noqa: BLE001 - a driver's hook must not crash doctor
            out.append(fail(f"driver.{dcfg.name}", f"the device check raised {exc!r}"[:300],
                            "report this as a bug of the driver's doctor() hook"))
    return out
