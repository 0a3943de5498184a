"""``AgentControl``: everything the agent's services (the systemd notifier, the dashboard) and the reload task
may ask of or tell the agent. They get this surface, never the ``Agent`` itself, so none of them reaches into its
fields or rewrites them from outside; the agent (``pipeline.Agent``) implements it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agent.config import AgentConfig
from drivers.base import Event

if TYPE_CHECKING:
    from agent.health import RateMeter
    from agent.reload import ReloadPlan
    from agent.store.stats import StoreStats
    from agent.uplink.link import SubscribingLink


class AgentControl(Protocol):
    @property
    def cfg(self) -> AgentConfig:
        """The running config (read only: change it with ``reload``)."""
        ...

    def emit(self, event: Event) -> None:
        """Record an event (written with the next store transaction, published like any other)."""
        ...

    # ---------------------------------------------------------------- readiness and liveness
    async def wait_ready(self) -> None:
        """Returns once the store is open and every task and driver has been started."""
        ...

    def drivers_starting(self) -> list[str]:
        """Drivers that have not yet made their first attempt to open their device."""
        ...

    def dead_tasks(self) -> list[str]:
        """Internal tasks that have stopped (none while the pipeline is healthy)."""
        ...

    async def store_answers(self, timeout_s: float) -> bool:
        """True if the store thread takes a call within ``timeout_s`` (it is not stuck)."""
        ...

    def drivers_status(self) -> list[dict[str, Any]]:
        """Each driver's name, type, state (starting/running/backoff/stopped), restarts and last error."""
        ...

    def processor_faults(self) -> int:
        """Batches a processor (the twin) failed on since start, plus model calls that failed inside the current
        processors (a model that raises costs predictions, not readings: see ``UsesModels.model_failures``)."""
        ...

    # ---------------------------------------------------------------- health
    def health(self, store: StoreStats, meter: RateMeter) -> dict[str, Any]:
        """The health message (health.v1) around store figures the caller read on its own connection."""
        ...

    def status_line(self) -> str:
        """One line for systemd's STATUS=."""
        ...

    # ---------------------------------------------------------------- configuration
    async def reload(self, new: AgentConfig) -> ReloadPlan:
        """Apply what can change at run time; raises ValueError (nothing applied) for an impossible set."""
        ...

    def dashboard_token(self) -> str:
        """The dashboard token in force now (by value; empty = none), for a guard that checks each request."""
        ...

    # ---------------------------------------------------------------- remote control (agent/remote)
    def mqtt(self) -> SubscribingLink | None:
        """The broker connection the uplink publishes on (None while the uplink is off)."""
        ...

    async def rebuild_processors(self) -> dict[str, str | None]:
        """Build the processors (the twin) again from the running config, so they load the models in force now;
        the old ones run until the new ones are ready. Returns the model version per family now in use."""
        ...

    def model_versions(self) -> dict[str, str | None]:
        """The version of each model family the processors use (None: that model is not loaded)."""
        ...


@runtime_checkable
class UsesModels(Protocol):
    """A processor that runs models (the twin): the version of each family it loaded (None: not loaded)."""

    def model_versions(self) -> dict[str, str | None]: ...

    def model_failures(self) -> int: ...


@runtime_checkable
class HealthPart(Protocol):
    """A service that adds fields to the health message (the remote parts: config and model versions)."""

    def health_fields(self) -> dict[str, Any]: ...
