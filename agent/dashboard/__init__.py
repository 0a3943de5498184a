"""Local live dashboard served by the agent (``[dashboard]`` in the config; aiohttp from the ``[dashboard]`` extra).

``server`` (HTTP, SSE, the ``Service``), ``hub`` (one store poll per tick, fanned out to browsers), ``reader``
(read-only SQLite connection on its own thread), ``auth`` (token / loopback rule), ``static/`` (page, uPlot).
"""

from agent.dashboard.server import DashboardService

__all__ = ["DashboardService"]
