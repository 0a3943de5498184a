"""Agent health, built in one place: the ``health`` message (schemas/health.v1.json) that the agent publishes
and logs, and that the dashboard shows.

The store figures come from ``agent.store.stats.store_stats`` on whichever connection the caller owns (the store
thread for the published message, the dashboard's read-only connection for the page); everything else from the
agent's parts. Each reader keeps its own ``RateMeter``, so one consumer's polling never skews the rates another
one sees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from agent import __version__
from agent.store.stats import StoreStats


@dataclass
class RateMeter:
    """Acknowledged messages and readings per second, over the window since the previous reading (at least
    ``min_window_s``: a reader that asks more often sees the last figures again). The first window starts when
    the meter is made, from zero."""

    min_window_s: float = 0.0
    _t: float = field(default_factory=time.monotonic)
    _msgs: int = 0
    _readings: int = 0
    _rates: tuple[float, float] = (0.0, 0.0)

    def update(self, now: float, msgs: int, readings: int) -> tuple[float, float]:
        dt = now - self._t
        if dt >= max(self.min_window_s, 1e-6):
            self._rates = ((msgs - self._msgs) / dt, (readings - self._readings) / dt)
            self._t, self._msgs, self._readings = now, msgs, readings
        return self._rates


def build_health(
    *,
    rig: str,
    uptime_s: float,
    store: StoreStats,
    uplink: dict[str, Any] | None,
    uplink_state: str,
    drivers: list[dict[str, Any]],
    meter: RateMeter,
    now: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``extra``: fields services add (``remote``: config and model versions)."""
    up = uplink or {}
    msgs_s, readings_s = meter.update(now, up.get("acked_msgs", 0), up.get("acked_readings", 0))
    return {
        "v": 1,
        "type": "health",
        "rig": rig,
        "ts": time.time_ns() // 1_000_000,
        "uptime_s": round(uptime_s, 1),
        "version": __version__,
        "store_depth_readings": store["store_depth_readings"],
        "store_depth_events": store["store_depth_events"],
        "store_depth_cycles": store["store_depth_cycles"],
        "oldest_unsent_age_s": round(store["oldest_unsent_age_s"], 1),
        "store_bytes": store["store_bytes"],
        "dropped_readings": store["dropped_readings"],
        "publish_rate_msgs_s": round(msgs_s, 2),
        "readings_rate_s": round(readings_s, 1),
        "acked_readings": up.get("acked_readings", 0),
        "publish_errors": up.get("publish_errors", 0),
        "publish_rejected": up.get("publish_rejected", 0),
        "publish_held": up.get("publish_held", []),
        "uplink_state": uplink_state,
        "drivers": drivers,
        **(extra or {}),
    }
