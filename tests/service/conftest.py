"""Helpers for the service tests: a real AF_UNIX datagram socket standing in for systemd's notify socket, and the
unit file's settings."""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "battery-twin.service"


def unit_settings(path: Path = UNIT) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file (keys may repeat, e.g. DeviceAllow=)."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def unit_seconds(key: str) -> float:
    value = unit_settings()[key][-1]
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    assert m, f"{key}={value} is not in seconds or minutes"
    return float(m.group(1)) * (60 if m.group(2) == "min" else 1)


class NotifySocket:
    """Receives sd_notify datagrams the way systemd does (SOCK_DGRAM on a filesystem path)."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, dict[str, str]]] = []

    def env(self, watchdog_usec: int | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": str(self.path)}
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def receive(self, timeout_s: float) -> dict[str, str] | None:
        self.sock.settimeout(max(timeout_s, 0.001))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append((time.monotonic(), fields))
        return fields

    def wait_for(self, key: str, value: str | None = None, timeout_s: float = 20.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = self.receive(deadline - time.monotonic())
            if msg is not None and key in msg and (value is None or msg[key] == value):
                return msg
        raise AssertionError(
            f"no {key}{'=' + value if value else ''} notification within {timeout_s} s; got "
            f"{[m for _, m in self.messages][-10:]}"
        )

    def collect(self, duration_s: float) -> list[dict[str, str]]:
        out = []
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            msg = self.receive(deadline - time.monotonic())
            if msg is not None:
                out.append(msg)
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def notify_socket():
    d = Path(tempfile.mkdtemp(prefix="btn-"))  # AF_UNIX paths are limited to 107 bytes: keep it short
    s = NotifySocket(d / "notify.sock")
    yield s
    s.close()
    shutil.rmtree(d, ignore_errors=True)
