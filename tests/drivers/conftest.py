"""Fixtures for the driver tests: socat pty pairs and emulators in a background thread, cleaned up after."""

from __future__ import annotations

import pytest

from drivers.emulator import Background
from tests.drivers.support import PtyPair


@pytest.fixture()
def pty_pair(tmp_path):
    pairs: list[PtyPair] = []

    def make(name: str = "tty") -> PtyPair:
        p = PtyPair(tmp_path, name).start()
        pairs.append(p)
        return p

    yield make
    for p in pairs:
        p.stop()


@pytest.fixture()
def serve():
    """serve(emulator) runs it in a background thread until the test ends."""
    running: list[Background] = []

    def start(emulator, name: str = "emulator") -> Background:
        bg = Background(emulator, name).start()
        running.append(bg)
        return bg

    yield start
    for bg in reversed(running):
        bg.stop()
