"""Run an emulator in a background thread with its own event loop (tests, notebooks, embedding).

The emulator keeps serving while the caller's thread blocks on a driver, an agent or a subprocess; faults are
switched from the caller's thread by plain attribute writes (``emu.faults[2] = "silent"``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any


class Background:
    def __init__(self, emulator: Any, name: str = "emulator"):
        self.emulator = emulator
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ticks: asyncio.Task | None = None
        self._ready = threading.Event()

    def _main(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def call(self, fn: Callable[[], Awaitable[Any]], timeout_s: float = 10.0) -> Any:
        """Run ``fn()`` (a coroutine function) on the emulator's loop and wait for its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout_s)

    def start(self, timeout_s: float = 10.0) -> Background:
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait(timeout_s)
        self.call(self.emulator.start, timeout_s)

        async def ticks() -> None:
            self._ticks = asyncio.current_task()
            await self.emulator.tick_loop()

        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(ticks(), self.loop)
        return self

    def restart_server(self, down_s: float = 0.0) -> None:
        """Stop serving (the peer vanishes), wait ``down_s``, serve again (it returns)."""
        self.call(self.emulator.stop)
        if down_s:
            threading.Event().wait(down_s)
        self.call(self.emulator.start)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            if self._ticks is not None:
                self._ticks.cancel()
                await asyncio.gather(self._ticks, return_exceptions=True)
            await self.emulator.stop()

        try:
            self.call(shutdown, timeout_s)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout_s)
            self._thread = None
