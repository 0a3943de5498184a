"""Request/response over MQTT, as the shadow and jobs services speak it: publish a request with a ``clientToken``,
the answer comes back on ``<topic>/accepted`` or ``<topic>/rejected`` carrying the same token. Messages without a
waiting request (deltas, notify-next) go to the handler registered for their topic.

Everything runs on the loop; the link hands received messages over from the MQTT thread.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
from collections.abc import Callable
from typing import Any

from agent.uplink.link import PublishFailed, SubscribingLink, accepted, reason_name

log = logging.getLogger("agent.remote")

Doc = dict[str, Any]


class RequestFailed(Exception):
    """No answer (timeout, no PUBACK, disconnected) or a refused request; ``doc`` is the rejection, if any."""

    def __init__(self, message: str, doc: Doc | None = None):
        super().__init__(message)
        self.doc = doc or {}


class Channel:
    def __init__(self, link: SubscribingLink, timeout_s: float = 20.0):
        self.link = link
        self.timeout_s = timeout_s
        self._routes: dict[str, Callable[[Doc], None]] = {}
        self._waiting: dict[str, asyncio.Future[tuple[str, Doc]]] = {}
        self._tokens = itertools.count(1)
        self._prefix = os.urandom(4).hex()
        link.on_message(self._on_message)

    def route(self, topic: str, handler: Callable[[Doc], None]) -> None:
        """Messages on ``topic`` that answer no waiting request go to ``handler`` (on the loop)."""
        self._routes[topic] = handler

    async def subscribe(self, filters: list[str]) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                codes = await self.link.subscribe(filters)
        except (TimeoutError, PublishFailed) as exc:
            raise RequestFailed(f"no SUBACK for {filters}: {exc or 'timeout'}") from None
        refused = [f"{f} ({reason_name(c)})" for f, c in zip(filters, codes) if c >= 0x80]
        if refused:
            raise RequestFailed(f"subscription refused: {', '.join(refused)} (check the thing's IoT policy)")

    async def request(self, topic: str, doc: Doc) -> Doc:
        """Publish ``doc`` (with a fresh clientToken) and return the ``/accepted`` answer; RequestFailed otherwise."""
        token = f"{self._prefix}-{next(self._tokens)}"
        fut: asyncio.Future[tuple[str, Doc]] = asyncio.get_running_loop().create_future()
        self._waiting[token] = fut
        try:
            async with asyncio.timeout(self.timeout_s):
                code = await self.link.publish(topic, json.dumps({**doc, "clientToken": token}).encode())
                if not accepted(code):
                    raise RequestFailed(f"publish to {topic} refused: {reason_name(code)}")
                where, answer = await fut
        except TimeoutError:
            raise RequestFailed(f"no answer to {topic} within {self.timeout_s:.0f} s") from None
        except PublishFailed as exc:
            raise RequestFailed(f"publish to {topic} failed: {exc}") from None
        finally:
            self._waiting.pop(token, None)
        if where.endswith("/rejected"):
            raise RequestFailed(f"{topic} rejected: {answer.get('code')} {answer.get('message', '')}".strip(), answer)
        return answer

    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
        except ValueError:
            log.warning("remote: a message on %s is not JSON; ignored", topic)
            return
        if not isinstance(doc, dict):
            log.warning("remote: a message on %s is not a JSON object; ignored", topic)
            return
        fut = self._waiting.get(str(doc.get("clientToken", "")))
        if fut is not None and topic.endswith(("/accepted", "/rejected")):
            if not fut.done():
                fut.set_result((topic, doc))
            return
        handler = self._routes.get(topic)
        if handler is not None:
            handler(doc)
