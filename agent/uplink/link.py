"""What the uplink needs of a link to the broker, and what a PUBACK's reason code means.

A ``Link`` publishes QoS1 and hands back an asyncio future of the PUBACK's MQTT5 reason code (or fails it with
``PublishFailed`` when there was no PUBACK: timeout, disconnect, a client that refused the packet); it mirrors
connect/disconnect into ``connected``. ``mqtt.MqttLink`` (awsiotsdk) is the real one; tests use an in-process
fake (``tests/support/fakelink.py``) to drive the uplink's logic in virtual time, without a broker.

A ``SubscribingLink`` also receives, on the same connection: the remote parts (``agent/remote``: device shadow and
IoT Jobs) subscribe to their topics after every new connection (sessions are clean) and get each message on the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

SUCCESS = 0x00
NO_MATCHING_SUBSCRIBERS = 0x10  # IoT Core and mosquitto answer this when no one listens: the message is accepted

# PUBACK reason codes that will not change if the same message is published again at once: back off
# exponentially, raise one event per kind, show in health (issue 14.4). Others >= 0x80 are retried at once.
PERMANENT = {
    0x87: "NOT_AUTHORIZED",
    0x90: "TOPIC_NAME_INVALID",
    0x97: "QUOTA_EXCEEDED",
    0x99: "PAYLOAD_FORMAT_INVALID",
}
TRANSIENT = {0x80: "UNSPECIFIED_ERROR", 0x83: "IMPLEMENTATION_SPECIFIC_ERROR", 0x91: "PACKET_IDENTIFIER_IN_USE"}


class PublishFailed(Exception):
    """No PUBACK for a publish (ack timeout, connection lost, client stopped or refused): publish it again."""


def accepted(reason_code: int) -> bool:
    """MQTT5: a reason code below 0x80 is success (0 success, 16 no matching subscribers)."""
    return reason_code < 0x80


def reason_name(reason_code: int) -> str:
    if reason_code == SUCCESS:
        return "SUCCESS"
    if reason_code == NO_MATCHING_SUBSCRIBERS:
        return "NO_MATCHING_SUBSCRIBERS"
    return PERMANENT.get(reason_code) or TRANSIENT.get(reason_code) or f"0x{reason_code:02x}"


class Link(Protocol):
    """The uplink's view of the connection to the broker."""

    connected: asyncio.Event  # set while connected, cleared on disconnect (on the agent's loop)

    @property
    def state(self) -> str:
        """``off``, ``connecting``, ``connected``, ``disconnected`` or ``stopped`` (health's ``uplink_state``)."""
        ...

    def publish(self, topic: str, payload: bytes) -> asyncio.Future[int]:
        """QoS1 publish; the future resolves (on the loop) to the PUBACK's reason code or fails with
        ``PublishFailed``. Call on the loop thread."""
        ...


MessageHandler = Callable[[str, bytes], None]


class SubscribingLink(Link, Protocol):
    """A link that also receives: what the remote parts need of the connection."""

    @property
    def connects(self) -> int:
        """Connections made so far; a new one has no subscriptions yet (clean session)."""
        ...

    def subscribe(self, topic_filters: list[str]) -> asyncio.Future[list[int]]:
        """QoS1 SUBSCRIBE; the future resolves to the SUBACK's reason codes, one per filter (below 0x80: granted),
        or fails with ``PublishFailed`` when there was no SUBACK. Call on the loop thread."""
        ...

    def on_message(self, handler: MessageHandler) -> None:
        """Every message received on the connection goes to ``handler(topic, payload)``, called on the loop."""
        ...
