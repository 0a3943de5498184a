"""Running the agent as a process: logging, signals, exit codes.

SIGTERM/SIGINT: stop drivers, commit, publish what fits in the drain window, close MQTT and the store, exit 0.
SIGHUP: re-read the config file and restart only the drivers whose section changed (``agent.reload``).
Under systemd (``$NOTIFY_SOCKET``) the ``SystemdNotifier`` service sends READY/WATCHDOG/STOPPING.
Exit 2 for configuration problems found at start (including unusable TLS files: restarting cannot fix them),
3 when the store exists but cannot be used (locked by another process, read-only for this user, unreachable:
it is left untouched, and systemd's restart tries again), 1 for anything unexpected.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import sys

from agent.config import AgentConfig, ConfigError, load_config
from agent.guidance import dashboard_url, first_run_text
from agent.healthfile import HealthFile, health_file_path
from agent.logs import setup_logging
from agent.pipeline import Agent, StartupError
from agent.processing import Processor
from agent.reload import reload_on_signal
from agent.remote.layer import load_effective, loader, state_dir
from agent.remote.models import ModelStore
from agent.sdnotify import SystemdNotifier
from agent.services import SectionService, Service
from agent.store import StoreUnavailable
from agent.uplink.mqtt import TlsFilesError
from drivers.base import Event

log = logging.getLogger("agent")


def _dashboard(cfg: AgentConfig) -> Service | None:
    if not cfg.dashboard.enabled:
        return None
    from agent.dashboard import DashboardService

    return DashboardService(cfg.dashboard)


class Processors:
    """Builds the processors (the twin) for a config; with ``[remote] jobs`` the twin loads the models jobs
    installed (agent/remote/models.py) instead of the configured or shipped files."""

    def __init__(self, models: ModelStore | None):
        self.models = models

    def __call__(self, cfg: AgentConfig) -> list[Processor]:
        if not cfg.twin.enabled:
            return []
        from agent.twin import build_twin

        return [build_twin(self.models.apply(cfg) if self.models is not None else cfg)]


def build_agent(cfg: AgentConfig, config_path: str | None = None) -> Agent:
    """The agent with the processors (twin) and services (dashboard, watchdog, remote) its config asks for."""
    services: list[Service] = [
        SectionService("dashboard", _dashboard, cfg),
        SystemdNotifier(),
        HealthFile(health_file_path(cfg)),  # for probes that cannot ask the process (the container HEALTHCHECK)
    ]
    if cfg.remote.enabled:
        from agent.remote.service import RemoteService

        services.append(RemoteService(cfg, config_path))
    factory = Processors(ModelStore(state_dir(cfg)) if cfg.remote.jobs else None)
    return Agent(cfg, processors=factory(cfg), services=services, processor_factory=factory)


async def _main(cfg: AgentConfig, config_path: str | None = None) -> int:
    events: list[Event] = []
    if cfg.remote.shadow and config_path is not None:
        try:  # the file with the shadow layer confirmed before (a restart without network runs it)
            cfg, events = load_effective(config_path)
        except ConfigError as exc:
            log.error("cannot read %s again: %s; running what was loaded", config_path, exc)
    agent = build_agent(cfg, config_path)
    for event in events:
        agent.emit(event)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reload_requested = asyncio.Event()  # installed before start: SIGHUP's default action would kill us
    loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
    try:
        await agent.start()
    except (StartupError, TlsFilesError, StoreUnavailable) as exc:
        log.error("cannot start: %s", exc)
        await agent.stop(drain_timeout_s=0.1)
        return StoreUnavailable.exit_code if isinstance(exc, StoreUnavailable) else 2
    if not any(os.environ.get(k) for k in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "container")):  # a person, not a service
        sys.stderr.write(first_run_text(cfg, dashboard_url(agent.services), config_path))
        sys.stderr.flush()
    notifier = next((s for s in agent.services if isinstance(s, SystemdNotifier)), None)
    reread = loader if cfg.remote.shadow else load_config
    reloader = asyncio.create_task(
        reload_on_signal(agent, config_path, reload_requested, notifier, reread), name="reload"
    )
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
