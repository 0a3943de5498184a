"""Running the agent as a process: logging, signals, exit codes.

SIGTERM/SIGINT: stop drivers, commit, publish what fits in the drain window, close MQTT and the store, exit 0.
SIGHUP: re-read the config file and restart only the drivers whose section changed (``agent.reload``).
Under systemd (``$NOTIFY_SOCKET``) the ``SystemdNotifier`` service sends READY/WATCHDOG/STOPPING.
Exit 2 for configuration problems found at start (including unusable TLS files), 1 for anything unexpected.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal

from agent.config import AgentConfig
from agent.healthfile import HealthFile, health_file_path
from agent.logs import setup_logging
from agent.pipeline import Agent, StartupError
from agent.reload import reload_on_signal
from agent.sdnotify import SystemdNotifier
from agent.uplink.mqtt import TlsFilesError

log = logging.getLogger("agent")


def build_agent(cfg: AgentConfig) -> Agent:
    """The agent with the processors (twin) and services (dashboard, watchdog) its config asks for."""
    processors: list = []
    services: list = []
    if cfg.dashboard.enabled:
        from agent.dashboard import DashboardService

        services.append(DashboardService(cfg.dashboard))
    services.append(SystemdNotifier())
    services.append(HealthFile(health_file_path(cfg)))  # for probes that cannot ask the process (HEALTHCHECK)
    if cfg.twin.enabled:
        from agent.twin import build_twin

        processors.append(build_twin(cfg))
    return Agent(cfg, processors=processors, services=services)


async def _main(cfg: AgentConfig, config_path: str | None = None) -> int:
    agent = build_agent(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reload_requested = asyncio.Event()  # installed before start: SIGHUP's default action would kill us
    loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
    try:
        await agent.start()
    except (StartupError, TlsFilesError) as exc:
        log.error("cannot start: %s", exc)
        await agent.stop(drain_timeout_s=0.1)
        return 2
    notifier = next((s for s in agent.services if isinstance(s, SystemdNotifier)), None)
    reloader = asyncio.create_task(reload_on_signal(agent, config_path, reload_requested, notifier), name="reload")
    await stop.wait()
    reloader.cancel()
    await asyncio.gather(reloader, return_exceptions=True)
    await agent.stop(drain_timeout_s=5.0)
    return 0


def run_agent(cfg: AgentConfig, config_path: str | None = None) -> int:
    setup_logging(cfg.log.level, cfg.log.format)
    # `kill -USR1 <pid>` prints every thread's stack to stderr (the journal): how to see where a stuck agent is.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if config_path is None:
        log.info("no config file given: using the embedded default (simulated rig, uplink off)")
    try:
        return asyncio.run(_main(cfg, config_path))
    except KeyboardInterrupt:
        return 0
