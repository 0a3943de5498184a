"""Publishes the broker refuses for good (issue 14.4): back off, say so once, show it in health, never spin.

A PUBACK reason code such as 0x87 (not authorised: the IoT policy does not allow the topic), 0x90 (topic name
invalid) or 0x97 (quota exceeded) will not change if the same message goes out again at once. For such a code
the stream (telemetry, events or cycles: one topic each) is *held*: its rows stay in the store, and one probe
message is published per backoff step (exponential with jitter, 1 s doubling to 5 min), so a broken policy costs
one publish every few minutes, not a loop at full speed. The first rejection of each (stream, code) raises one
``uplink.publish_rejected`` event; an accepted probe releases the stream and raises ``uplink.publish_recovered``.
Other streams keep flowing. Health shows ``publish_rejected`` and the held streams.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.uplink.link import reason_name
from drivers.backoff import Backoff
from drivers.base import Event

log = logging.getLogger("agent.uplink")

BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 300.0


@dataclass
class Held:
    reason_code: int
    topic: str
    since: float  # loop time of the first rejection
    until: float  # loop time before which nothing of this stream is published
    backoff: Backoff
    rejections: int = 1
    probing: bool = False  # the probe is in flight: one at a time
    codes_reported: set[int] = field(default_factory=set)


class Rejections:
    """Loop-side state of held streams; ``emit`` takes events to the store (published like any other)."""

    def __init__(self, emit: Callable[[Event], None], rand: Callable[[], float] = random.random):
        self.emit = emit
        self.rand = rand
        self.held: dict[str, Held] = {}
        self.total = 0  # rejected publishes since start (health: publish_rejected)

    def rejected(self, stream: str, topic: str, code: int, probe: bool, now: float) -> None:
        """A permanent rejection of a message of ``stream``; ``probe``: it was the held stream's one probe (the
        others were in flight before the hold began and do not advance the backoff)."""
        self.total += 1
        h = self.held.get(stream)
        if h is None:
            b = Backoff(initial_s=BACKOFF_INITIAL_S, max_s=BACKOFF_MAX_S, jitter=0.5, rand=self.rand)
            h = self.held[stream] = Held(code, topic, now, now + b.next_delay(), b)
        else:
            h.rejections += 1
            h.reason_code = code
            if probe:
                h.until = now + h.backoff.next_delay()
                h.probing = False
        if code not in h.codes_reported:
            h.codes_reported.add(code)
            name = reason_name(code)
            log.error(
                "broker rejects publishes to %s: PUBACK 0x%02x %s; holding %s (rows stay in the store), "
                "next try in %.0f s",
                topic,
                code,
                name,
                stream,
                h.until - now,
            )
            self.emit(
                Event(
                    "uplink.publish_rejected",
                    f"the broker rejects publishes to {topic} with PUBACK 0x{code:02x} {name}: {stream} is held in "
                    "the store and retried with backoff (check the IoT policy, topic and quotas)",
                    level="alarm",
                    source="uplink",
                    data={"stream": stream, "topic": topic, "reason_code": code, "reason": name},
                )
            )

    def accepted(self, stream: str, now: float) -> None:
        h = self.held.pop(stream, None)
        if h is None:
            return
        log.warning("publishes to %s accepted again after %.0f s held", h.topic, now - h.since)
        self.emit(
            Event(
                "uplink.publish_recovered",
                f"the broker accepts publishes to {h.topic} again after {now - h.since:.0f} s "
                f"({h.rejections} rejected)",
                level="info",
                source="uplink",
                data={"stream": stream, "topic": h.topic, "rejections": h.rejections},
            )
        )

    def may_publish(self, stream: str, now: float) -> bool:
        """False while the stream waits out its backoff or has its one probe in flight."""
        h = self.held.get(stream)
        return h is None or (not h.probing and now >= h.until)

    def sending(self, stream: str) -> bool:
        """Called for every publish; True when it is a held stream's probe."""
        h = self.held.get(stream)
        if h is None:
            return False
        h.probing = True
        return True

    def probe_lost(self, stream: str) -> None:
        """A probe that timed out or lost its connection tells nothing: the next one may go at once."""
        h = self.held.get(stream)
        if h is not None:
            h.probing = False

    def next_release(self) -> float | None:
        """Loop time at which a held stream may publish its next probe (None when nothing is held)."""
        waits = [h.until for h in self.held.values() if not h.probing]
        return min(waits) if waits else None

    def health(self, now: float) -> list[dict[str, Any]]:
        return [
            {
                "stream": s,
                "reason_code": h.reason_code,
                "reason": reason_name(h.reason_code),
                "held_s": round(now - h.since, 1),
                "retry_in_s": round(max(0.0, h.until - now), 1),
                "rejections": h.rejections,
            }
            for s, h in sorted(self.held.items())
        ]
