"""One supervision loop for the agent's internal tasks (pipeline, remote service): log, back off, restart; a task
never dies silently, and each failure is an event."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from drivers.backoff import Backoff
from drivers.base import Event


async def supervised(
    name: str,
    fn: Callable[[], Awaitable[None]],
    emit: Callable[[Event], None] | None,
    log: logging.Logger,
    kind: str = "agent.task_fault",
    source: str = "agent",
    level: str = "alarm",
) -> None:
    """Run ``fn`` until it returns; after a failure restart it with backoff (reset once it ran for a minute)."""
    backoff = Backoff(initial_s=1.0, max_s=60.0, stable_after_s=60.0)
    while True:
        started = time.monotonic()
        try:
            await fn()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            backoff.succeeded_after(time.monotonic() - started)
            delay = backoff.next_delay()
            log.exception("task %s failed; restarting in %.0f s", name, delay)
            if emit is not None:
                msg = f"internal task {name} failed: {exc!r}"[:500]
                emit(Event(kind, msg, level=level, source=source, data={"task": name}))
            await asyncio.sleep(delay)
