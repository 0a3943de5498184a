"""The store's thread: every Store call runs here, so SQLite never blocks the asyncio loop and the store's state
(its connection, the writer's counters and cell table) is touched by one thread only.

Callers on the loop hand in a function that receives the store: ``await worker.call(Store.stats)``. After each
call the store thread sends the committed seq counters back to the loop (``call_soon_threadsafe``), where the
worker keeps its own copy, ``committed``, that only grows: the uplink decides whether there is something to send
from it, without reaching into the store from the wrong thread.

The executor's queue is bounded by construction: each caller (one task per driver, the uplink, the health task,
maintenance) awaits its call before making the next, so at most one call per task waits here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Concatenate, ParamSpec, TypeVar

from agent.store.schema import STREAMS
from agent.store.store import Store
from drivers.base import Event

T = TypeVar("T")
P = ParamSpec("P")


class StoreClosed(RuntimeError):
    """A call reached the store thread before the store was opened or after it was closed."""


class StoreWorker:
    def __init__(self, opener: Callable[[], Store], executor: Executor | None = None):
        """``opener`` runs on the store thread at ``open()`` (e.g. ``functools.partial(Store.open, path)``);
        ``executor`` defaults to one dedicated thread (tests may pass one that runs calls inline)."""
        self._opener = opener
        self._pool = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._store: Store | None = None  # set and used on the store thread only
        self.committed: dict[str, int] = {s: 0 for s in STREAMS}  # loop side: highest committed seq per stream

    # ---------------------------------------------------------------- on the store thread
    def _open(self) -> tuple[list[Event], dict[str, int]]:
        store = self._opener()
        self._store = store
        return store.opened, dict(store.last_seq)

    def _close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def _apply(
        self,
        loop: asyncio.AbstractEventLoop,
        fn: Callable[Concatenate[Store, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        store = self._store
        if store is None:
            raise StoreClosed("the store is not open")
        try:
            return fn(store, *args, **kwargs)
        finally:
            # Told to the loop even if the caller was cancelled meanwhile (a driver stopped while its batch was
            # being committed): the commit happened, so the loop's copy must know. Queued before the call's
            # own result, so the caller resumes with ``committed`` already up to date.
            try:
                loop.call_soon_threadsafe(self._seen, dict(store.last_seq))
            except RuntimeError:  # the loop is closed: nobody left to tell
                pass

    # ---------------------------------------------------------------- from the loop
    def _seen(self, counters: dict[str, int]) -> None:
        for stream, last in counters.items():
            if last > self.committed.get(stream, 0):
                self.committed[stream] = last

    async def open(self) -> list[Event]:
        """Open the store on its thread; raises ``StoreUnavailable`` if the file cannot be used."""
        events, counters = await asyncio.get_running_loop().run_in_executor(self._pool, self._open)
        self._seen(counters)
        return events

    async def call(self, fn: Callable[Concatenate[Store, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(store, *args, **kwargs)`` on the store thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self._apply(loop, fn, *args, **kwargs))

    async def ping(self) -> None:
        """Returns once the store thread has reached this call (the watchdog's liveness check)."""
        await asyncio.get_running_loop().run_in_executor(self._pool, _noop)

    async def close(self) -> None:
        """Close the store (hint, checkpoint) on its thread, then stop the thread."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self._close)
        self._pool.shutdown(wait=True)


def _noop() -> None:
    return None
