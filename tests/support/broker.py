"""mosquitto with TLS client certificates on a reserved loopback port: the stand-in for AWS IoT Core.

``require_certificate true`` + ``use_identity_as_username true`` is how IoT Core authenticates a device: by its
certificate. Persistence is on so a subscriber's queued QoS1 messages survive a clean broker restart.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.pki import Pki
from tests.support.ports import reserve_port


def find_mosquitto() -> str:
    path = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if os.path.exists(p)), None
    )
    if path is None:
        raise RuntimeError(
            "mosquitto is not installed: the MQTT tests need it as the stand-in for AWS IoT Core "
            "(apt-get install mosquitto mosquitto-clients; `make test` does this when root)"
        )
    return path


class Broker:
    def __init__(self, workdir: Path, pki: Pki, port: int | None = None):
        self.dir = workdir
        self.pki = pki
        self.port = port or reserve_port()  # mosquitto cannot bind port 0 and say which it got
        self.proc: subprocess.Popen | None = None
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "data").mkdir(exist_ok=True)
        self.server_cert, self.server_key = pki.issue("localhost", server=True)
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        self.conf.write_text(
            f"user {getpass.getuser()}\nper_listener_settings false\nlistener {self.port} 127.0.0.1\n"
            f"cafile {pki.ca_cert}\ncertfile {self.server_cert}\nkeyfile {self.server_key}\n"
            "require_certificate true\nuse_identity_as_username true\n"
            f"persistence true\npersistence_location {self.dir / 'data'}/\nautosave_interval 1\n"
            "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 0\n"
            "max_packet_size 140000\n"
            f"log_dest file {self.log}\nlog_type error\nlog_type warning\nlog_type notice\n"
        )

    def start(self, timeout_s: float = 10.0) -> Broker:
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited: {self.proc.stderr.read().decode()} "
                    f"{self.log.read_text() if self.log.exists() else ''}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def pause(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
