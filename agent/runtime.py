"""Running the agent as a process: logging, signals, exit codes.

SIGTERM/SIGINT: stop drivers, commit, publish what fits in the drain window, close MQTT and the store, exit 0.
Exit 2 for configuration problems found at start (including unusable TLS files), 1 for anything unexpected.
"""
from __future__ import annotations

import asyncio
import logging
import signal

from agent.config import AgentConfig
from agent.logs import setup_logging
from agent.pipeline import Agent, StartupError
from agent.uplink.mqtt import TlsFilesError

log = logging.getLogger("agent")


def build_agent(cfg: AgentConfig) -> Agent:
    """The agent with the processors (twin) and services (dashboard, watchdog) its config asks for."""
    processors: list = []
    services: list = []
    if cfg.dashboard.enabled:
        from agent.dashboard import DashboardService

        services.append(DashboardService(cfg.dashboard))
    return Agent(cfg, processors=processors, services=services)


async def _main(cfg: AgentConfig) -> int:
    agent = build_agent(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await agent.start()
    except (StartupError, TlsFilesError) as exc:
        log.error("cannot start: %s", exc)
        await agent.stop(drain_timeout_s=0.1)
        return 2
    await stop.wait()
    await agent.stop(drain_timeout_s=5.0)
    return 0


def run_agent(cfg: AgentConfig, config_path: str | None = None) -> int:
    setup_logging(cfg.log.level, cfg.log.format)
    if config_path is None:
        log.info("no config file given: using the embedded default (simulated rig, uplink off)")
    try:
        return asyncio.run(_main(cfg))
    except KeyboardInterrupt:
        return 0
