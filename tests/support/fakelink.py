"""An in-process ``Link`` (agent/uplink/link.py) for the uplink's logic: no broker, no sockets, no threads.

Every publish is recorded; ``answer(topic, payload)`` decides its fate: a reason code (the PUBACK), an exception
(the publish fails without one), or None (no answer: the test settles it by hand, or the uplink's ack timeout
does). Answers arrive after ``delay_s`` of loop time (virtual time in these tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from agent.uplink.envelope import decode_telemetry
from agent.uplink.link import PublishFailed

Answer = int | BaseException | None


@dataclass
class Published:
    topic: str
    payload: bytes
    t: float  # loop time of the publish
    future: asyncio.Future[int]

    def seqs(self) -> list[int]:
        return [r["seq"] for r in decode_telemetry(self.payload)]


class FakeLink:
    def __init__(self, answer: Callable[[str, bytes], Answer] = lambda topic, payload: 0, delay_s: float = 0.0):
        self.answer = answer
        self.delay_s = delay_s
        self.connected = asyncio.Event()
        self.connected.set()
        self._state = "connected"
        self.published: list[Published] = []

    @property
    def state(self) -> str:
        return self._state

    def publish(self, topic: str, payload: bytes) -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self.published.append(Published(topic, payload, loop.time(), fut))
        outcome = self.answer(topic, payload)
        if outcome is not None:
            loop.call_later(self.delay_s, _settle, fut, outcome)
        return fut

    def on(self, suffix: str) -> list[Published]:
        """Publishes to topics ending in ``suffix`` (e.g. ``/telemetry``)."""
        return [p for p in self.published if p.topic.endswith(suffix)]

    def disconnect(self) -> None:
        """The connection drops: every unanswered publish fails, as the SDK fails them."""
        self._state = "disconnected"
        self.connected.clear()
        for p in self.published:
            if not p.future.done():
                p.future.set_exception(PublishFailed("connection lost"))

    def reconnect(self) -> None:
        self._state = "connected"
        self.connected.set()


def _settle(fut: asyncio.Future[int], outcome: int | BaseException) -> None:
    if fut.done():
        return
    if isinstance(outcome, BaseException):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)
