"""Virtual time for asyncio code: an event loop whose clock jumps to the next timer whenever every task waits.

``asyncio.sleep(3600)``, ``asyncio.timeout`` and ``loop.call_later`` all run on ``loop.time()``, so code that
uses the loop's clock (the uplink does) runs its hours of linger, backoff and ack timeouts in milliseconds of
wall time, in the same order every run. Real I/O still works (the selector is polled without blocking first);
a wait with no timer and nothing ready is a deadlock and raises instead of hanging the test. Calls that need
another thread must not be awaited here: give the store worker an ``InlineExecutor``.

The idea is aiotools' VirtualClock and the looptime pytest plugin; thirty lines of our own instead of a
dependency.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _Selector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop):
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("virtual time: every task waits and no timer is set (deadlock)")
        self._loop.advance(timeout)
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._vt = 0.0
        super().__init__(selector=_Selector(self))

    def time(self) -> float:
        return self._vt

    def advance(self, seconds: float) -> None:
        self._vt += max(0.0, seconds)


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a virtual-time loop."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)


class InlineExecutor(concurrent.futures.Executor):
    """Runs each call at once on the caller's thread: a store worker without a thread, for virtual time."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
            fut.set_exception(exc)
        return fut
