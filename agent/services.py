"""Services: things that run beside the pipeline for the agent's lifetime (the dashboard, the systemd notifier).
Started after the pipeline is up with the agent's ``AgentControl`` surface, stopped before it is torn down.

``SectionService`` builds a service from one config section and rebuilds it when a reload changes that section
(compared by value, secrets included): how a new dashboard token takes effect, and the old one stops working.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from agent.config import AgentConfig
from agent.control import AgentControl
from agent.reload import comparable
from drivers.base import Event

log = logging.getLogger("agent")


class Service(Protocol):
    async def start(self, agent: AgentControl) -> None: ...

    async def stop(self) -> None: ...


class SectionService:
    """A ``Service`` made from ``cfg.<section>`` by ``make`` (None: off), remade on reload when the section
    changes."""

    def __init__(self, section: str, make: Callable[[AgentConfig], Service | None], cfg: AgentConfig):
        self.section = section
        self.make = make
        self.inner = make(cfg)
        self._value: Any = comparable(getattr(cfg, section))
        self._control: AgentControl | None = None

    async def start(self, agent: AgentControl) -> None:
        self._control = agent
        if self.inner is not None:
            await self.inner.start(agent)

    async def stop(self) -> None:
        if self.inner is not None:
            await self.inner.stop()

    async def reconfigure(self, cfg: AgentConfig) -> bool:
        """Restart with the new section if it changed; True if it did. A failed start is an event, not a crash
        of the reload (the pipeline never depends on a service)."""
        value = comparable(getattr(cfg, self.section))
        if value == self._value:
            return False
        await self.stop()
        self._value = value
        self.inner = self.make(cfg)
        if self.inner is not None and self._control is not None:
            try:
                await self.inner.start(self._control)
            except Exception as exc:
                log.exception("service [%s] failed to restart", self.section)
                self._control.emit(
                    Event(
                        "agent.service_fault",
                        f"[{self.section}] could not restart after a reload: {exc!r}"[:500],
                        level="warning",
                        data={"section": self.section},
                    )
                )
                self.inner = None
        log.info("[%s] changed: restarted", self.section)
        return True
