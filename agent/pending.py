"""What waits for the next store transaction besides a batch's own readings: events raised by drivers and stages
between batches, and the events and cycles of a batch the store could not take (they are never dropped for a
full disk: they go with the next transaction that succeeds).

Bounded, like every buffer in the agent: past ``max_items`` an overflow is counted and reported as one
``agent.events_overflow`` event instead of growing memory.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

from drivers.base import Event

MAX_PENDING = 10_000


class Pending:
    def __init__(self, max_items: int = MAX_PENDING):
        self.max_items = max_items
        self._events: collections.deque[Event] = collections.deque()
        self._cycles: collections.deque[dict[str, Any]] = collections.deque()
        self._overflow = 0

    def __bool__(self) -> bool:
        return bool(self._events or self._cycles or self._overflow)

    def emit(self, event: Event) -> None:
        """The agent's event sink (drivers, stages): cheap, never blocks, bounded."""
        if len(self._events) >= self.max_items:
            self._overflow += 1
            return
        self._events.append(event)

    def keep(self, events: Iterable[Event], cycles: Iterable[dict[str, Any]] = ()) -> None:
        """Put back what a failed transaction carried."""
        for e in events:
            self.emit(e)
        for c in cycles:
            if len(self._cycles) >= self.max_items:
                self._overflow += 1
            else:
                self._cycles.append(c)

    def take(self) -> tuple[list[Event], list[dict[str, Any]]]:
        events, cycles = list(self._events), list(self._cycles)
        self._events.clear()
        self._cycles.clear()
        if self._overflow:
            events.append(
                Event(
                    "agent.events_overflow",
                    f"{self._overflow} events or cycles were not recorded: more than {self.max_items} waited for "
                    "the store",
                    level="alarm",
                    data={"count": self._overflow},
                )
            )
            self._overflow = 0
        return events, cycles
