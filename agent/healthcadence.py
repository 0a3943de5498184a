"""When the agent publishes its health to the cloud: on change, plus a heartbeat.

Health is computed every ``uplink.health_interval_s`` (the log line, the watchdog's view), but each message the
cloud receives costs per rig (docs/cost-per-cell-month.md), so a message goes out only

- at start, and whenever ``uplink.health_heartbeat_s`` has passed since the last one: the cloud's "rigs silent"
  alarm counts these heartbeats (terraform/modules/monitoring), so a live rig must never miss one;
- when something an operator acts on changes: the link state, the set of drivers or one's state or restart
  count, readings dropped, publish errors, or readings starting or stopping to flow.

Rates in a published message (``readings_rate_s``, ``publish_rate_msgs_s``) cover the last heartbeat period
(``rate_window_s``), which is longer than the uplink's linger: a healthy rig that batches its telemetry never
reads as 0 readings/s between two messages. The message stays health.v1; ``reason``, ``rate_window_s`` and
``heartbeat_s`` are additions.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config import UplinkConfig

Signature = tuple[Any, ...]


def effective_heartbeat_s(interval_s: float, heartbeat_s: float) -> float:
    """Health is checked once per interval, so a heartbeat below it means one message per check."""
    return max(interval_s, heartbeat_s)


def cadence_problem(linger_ms: int, interval_s: float, heartbeat_s: float) -> str | None:
    """Why these settings cannot work together (for the config's validation), or None."""
    beat_s = effective_heartbeat_s(interval_s, heartbeat_s)
    if linger_ms / 1000 >= beat_s:
        return (
            f"uplink.linger_ms ({linger_ms / 1000:g} s) must be shorter than the health heartbeat ({beat_s:g} s, "
            "uplink.health_heartbeat_s or health_interval_s if longer): a heartbeat reports the readings rate over "
            "one heartbeat period, and a rig that lingers longer would report 0 readings/s (and trip the cloud's "
            "rigs-silent alarm)"
        )
    return None


def signature(health: Mapping[str, Any], flowing: bool) -> Signature:
    """What, if it changes, is worth a message before the next heartbeat."""
    drivers = tuple(sorted((str(d["name"]), str(d["state"]), int(d["restarts"])) for d in health["drivers"]))
    return (
        health["uplink_state"],
        drivers,
        int(health["dropped_readings"]),
        int(health["publish_errors"]),
        flowing,
    )


class HealthCadence:
    """Decides which health snapshots to publish; keeps the counters to compute rates over a heartbeat."""

    def __init__(self, interval_s: float, heartbeat_s: float):
        self.interval_s = interval_s
        self.heartbeat_s = heartbeat_s
        # (monotonic s, acked readings, acked messages) per check, enough to span one heartbeat period
        self._samples: collections.deque[tuple[float, int, int]] = collections.deque(
            maxlen=math.ceil(heartbeat_s / interval_s) + 3  # + the start, a shortened sleep, the newest
        )
        self._last_sent_s: float | None = None
        self._last_signature: Signature | None = None
        self._observed: Signature | None = None

    @classmethod
    def from_config(cls, cfg: UplinkConfig) -> HealthCadence:
        return cls(cfg.health_interval_s, effective_heartbeat_s(cfg.health_interval_s, cfg.health_heartbeat_s))

    def sleep_s(self, now_s: float) -> float:
        """How long the health loop sleeps: one interval, or less when the heartbeat falls due sooner."""
        if self._last_sent_s is None:
            return self.interval_s
        due = self._last_sent_s + self.heartbeat_s - now_s
        return self.interval_s if due <= 0 else min(self.interval_s, due)  # overdue (link down): retry each interval

    def observe(self, health: Mapping[str, Any], now_s: float, acked_msgs: int) -> dict[str, Any] | None:
        """Record one snapshot (``Agent.health()``); return the message to publish now, or None."""
        self._samples.append((now_s, int(health["acked_readings"]), acked_msgs))
        t0, r0, m0 = self._window_start(now_s)
        span_s = now_s - t0
        readings_rate = (self._samples[-1][1] - r0) / span_s if span_s > 0 else 0.0
        msgs_rate = (acked_msgs - m0) / span_s if span_s > 0 else 0.0
        sig = self._observed = signature(health, readings_rate > 0)
        if self._last_sent_s is None:
            reason = "start"
        elif sig != self._last_signature:
            reason = "change"
        elif now_s - self._last_sent_s >= self.heartbeat_s - 0.5:  # 0.5 s: the loop's timer is not exact
            reason = "heartbeat"
        else:
            return None
        return {
            **health,
            "readings_rate_s": round(readings_rate, 1),
            "publish_rate_msgs_s": round(msgs_rate, 2),
            "reason": reason,
            "rate_window_s": round(span_s, 1),
            "heartbeat_s": self.heartbeat_s,
        }

    def published(self, now_s: float) -> None:
        """The message of the last ``observe`` was handed to the link: the next heartbeat counts from now."""
        self._last_sent_s = now_s
        self._last_signature = self._observed

    def _window_start(self, now_s: float) -> tuple[float, int, int]:
        """The newest sample at least one heartbeat old, else the oldest there is."""
        start = self._samples[0]
        for s in self._samples:
            if now_s - s[0] >= self.heartbeat_s - 0.5:
                start = s
            else:
                break
        return start
