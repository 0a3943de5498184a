"""An in-process ``Link`` (agent/uplink/link.py) for the uplink's logic: no broker, no sockets, no threads.

Every publish is recorded; ``answer(topic, payload)`` decides its fate: a reason code (the PUBACK), an exception
(the publish fails without one), or None (no answer: the test settles it by hand, or the uplink's ack timeout
does). Answers arrive after ``delay_s`` of loop time (virtual time in these tests).

It is also a ``SubscribingLink``: ``subscribe`` records the filters (SUBACK: granted QoS 1), ``deliver`` hands a
message to the handlers if a subscribed filter matches, as a broker would, and a ``peer`` (e.g. the shadow and jobs
stand-ins of ``tests/support/awsiot.py``) sees every publish and may answer with messages of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agent.uplink.envelope import decode_telemetry
from agent.uplink.link import MessageHandler, PublishFailed

Answer = int | BaseException | None
Peer = Callable[[str, bytes], Iterable[tuple[str, bytes]]]


def topic_matches(filter_: str, topic: str) -> bool:
    """MQTT topic filter matching (+ one level, # the rest)."""
    f, t = filter_.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


@dataclass
class Published:
    topic: str
    payload: bytes
    t: float  # loop time of the publish
    future: asyncio.Future[int]

    def seqs(self) -> list[int]:
        return [r["seq"] for r in decode_telemetry(self.payload)]


class FakeLink:
    def __init__(
        self,
        answer: Callable[[str, bytes], Answer] = lambda topic, payload: 0,
        delay_s: float = 0.0,
        peer: Peer | None = None,
    ):
        self.answer = answer
        self.delay_s = delay_s
        self.peer = peer
        self.connected = asyncio.Event()
        self.connected.set()
        self._state = "connected"
        self.connects = 1
        self.published: list[Published] = []
        self.filters: list[str] = []
        self.refuse_subscribe = False  # SUBACK 0x87 (not authorised) for every filter
        self._handlers: list[MessageHandler] = []

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
        if self.peer is not None and self._state == "connected":
            for t, p in self.peer(topic, payload):
                loop.call_later(self.delay_s, self.deliver, t, p)
        return fut

    def subscribe(self, topic_filters: list[str]) -> asyncio.Future[list[int]]:
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        if self._state != "connected":
            fut.set_exception(PublishFailed("not connected"))
        elif self.refuse_subscribe:
            fut.set_result([0x87] * len(topic_filters))
        else:
            self.filters.extend(topic_filters)
            fut.set_result([1] * len(topic_filters))
        return fut

    def on_message(self, handler: MessageHandler) -> None:
        self._handlers.append(handler)

    def deliver(self, topic: str, payload: bytes) -> bool:
        """A message from the broker: to every handler if a subscribed filter matches; True if delivered."""
        if self._state != "connected" or not any(topic_matches(f, topic) for f in self.filters):
            return False
        for h in list(self._handlers):
            h(topic, payload)
        return True

    def on(self, suffix: str) -> list[Published]:
        """Publishes to topics ending in ``suffix`` (e.g. ``/telemetry``)."""
        return [p for p in self.published if p.topic.endswith(suffix)]

    def disconnect(self) -> None:
        """The connection drops: every unanswered publish fails, as the SDK fails them; subscriptions are gone
        (clean session)."""
        self._state = "disconnected"
        self.connected.clear()
        self.filters.clear()
        for p in self.published:
            if not p.future.done():
                p.future.set_exception(PublishFailed("connection lost"))

    def reconnect(self) -> None:
        self._state = "connected"
        self.connects += 1
        self.connected.set()


def _settle(fut: asyncio.Future[int], outcome: int | BaseException) -> None:
    if fut.done():
        return
    if isinstance(outcome, BaseException):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)
