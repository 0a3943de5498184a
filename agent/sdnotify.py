"""systemd's notify protocol (sd_notify(3)) and the watchdog that feeds it, as an agent ``Service``.

A few lines of our own rather than a dependency: a message is one datagram of newline-separated ``KEY=VALUE``
lines sent to the AF_UNIX socket named in ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace).
Without ``$NOTIFY_SOCKET`` (not started by systemd) everything here is a no-op, so the agent behaves the same from
a shell.

READY=1 is sent once the store is open and every driver has made its first attempt to open its device (bounded:
a missing device must not keep systemd waiting, the supervisor retries it). WATCHDOG=1 is sent every third of
``$WATCHDOG_USEC`` only while the pipeline is healthy (no internal task stopped and the store thread answering),
so a stalled pipeline stops the pings and systemd restarts the agent after ``WatchdogSec=``. STOPPING=1 goes out
first thing on shutdown. Everything it knows of the agent comes through ``AgentControl``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

from agent.control import AgentControl

log = logging.getLogger("agent.sdnotify")

DRIVERS_FIRST_OPEN_TIMEOUT_S = 15.0  # READY waits at most this long for drivers' first open attempts


def _address(env: Mapping[str, str]) -> str | None:
    path = env.get("NOTIFY_SOCKET", "")
    if path.startswith("@"):
        return "\0" + path[1:]
    if path.startswith("/"):
        return path
    return None  # unset, or a transport we do not speak (vsock): behave as if not under systemd


def notify(*lines: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one notification (e.g. ``notify("READY=1", "STATUS=running")``); False when not under systemd."""
    addr = _address(os.environ if env is None else env)
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto("\n".join(lines).encode(), addr)
        return True
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)
        return False


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (a third of WatchdogSec=), or None when no watchdog is set for us."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 3e6


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it next to it (MONOTONIC_USEC=, systemd >= 253)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class SystemdNotifier:
    """The agent's ``Service`` for systemd: READY, WATCHDOG (only while healthy), STATUS, STOPPING."""

    def __init__(self, env: Mapping[str, str] | None = None):
        self.env = dict(os.environ if env is None else env)
        self.enabled = _address(self.env) is not None
        self.interval_s = watchdog_interval_s(self.env) if self.enabled else None
        self.agent: AgentControl | None = None
        self.pings = 0
        self.withheld = 0
        self._task: asyncio.Task[None] | None = None

    def send(self, *lines: str) -> bool:
        return notify(*lines, env=self.env) if self.enabled else False

    async def start(self, agent: AgentControl) -> None:
        self.agent = agent
        if self.enabled:
            self._task = asyncio.create_task(self._run(), name="sdnotify")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.send("STOPPING=1", "STATUS=stopping: draining the store to the uplink, then closing")

    # ---------------------------------------------------------------- reload hooks (agent.reload)
    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", "STATUS=reloading the configuration")

    def reloaded(self, summary: str) -> None:
        self.send("READY=1", f"STATUS={self.status_line()}; last reload: {summary}"[:1000])

    # ---------------------------------------------------------------- internals
    def status_line(self) -> str:
        return "starting" if self.agent is None else self.agent.status_line()

    async def _drivers_first_attempt(self, agent: AgentControl) -> None:
        deadline = time.monotonic() + DRIVERS_FIRST_OPEN_TIMEOUT_S
        while time.monotonic() < deadline:
            if not agent.drivers_starting():
                return
            await asyncio.sleep(0.05)
        slow = agent.drivers_starting()
        log.warning(
            "drivers still opening after %.0f s: %s; reporting ready anyway (they keep retrying)",
            DRIVERS_FIRST_OPEN_TIMEOUT_S,
            ",".join(slow),
        )

    async def healthy(self, agent: AgentControl) -> bool:
        """The pipeline's tasks are alive and the store thread answers within one ping interval."""
        return not agent.dead_tasks() and await agent.store_answers(self.interval_s or 5.0)

    async def _run(self) -> None:
        agent = self.agent
        if agent is None:
            return
        await agent.wait_ready()
        await self._drivers_first_attempt(agent)
        self.send("READY=1", f"STATUS={self.status_line()}", f"MAINPID={os.getpid()}")
        log.info(
            "told systemd we are ready watchdog_interval_s=%s", f"{self.interval_s:.1f}" if self.interval_s else "off"
        )
        if self.interval_s is None:
            return
        sick_since: float | None = None
        while True:
            await asyncio.sleep(self.interval_s)
            if await self.healthy(agent):
                if sick_since is not None:
                    log.info("pipeline healthy again: watchdog pings resumed")
                    sick_since = None
                self.send("WATCHDOG=1", f"STATUS={self.status_line()}")
                self.pings += 1
            else:
                self.withheld += 1
                if sick_since is None:
                    sick_since = time.monotonic()
                    dead = agent.dead_tasks()
                    log.error(
                        "pipeline unhealthy (stopped tasks: %s, or the store thread is stuck): withholding "
                        "watchdog pings, systemd restarts the agent after WatchdogSec",
                        ",".join(dead) or "none",
                    )
                    self.send(f"STATUS=unhealthy: withholding watchdog pings (tasks down: {','.join(dead) or '-'})")
