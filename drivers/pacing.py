"""The one way drivers and emulators keep time: ticks every ``interval_s`` on the monotonic clock.

``await pacer.wait()`` sleeps until the next tick is due and returns how many ticks are due (at least 1). Two
policies for a caller that fell behind (a slow agent, a loaded machine):

- ``catch_up=False`` (sampling a device): one tick, and the schedule restarts from now, so a late caller never
  bursts to make up for lost time;
- ``catch_up=True`` (a simulated clock): every missed tick is returned (at most ``max_ticks`` at a time, the rest
  on the next call), so simulated time keeps step with the wall clock for as long as the caller can keep up.

``wait(interval_s)`` spaces one tick differently (a failing device probed with backoff). The clock and the sleep
are injectable, so tests drive a pacer without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Pacer:
    def __init__(
        self,
        interval_s: float,
        *,
        catch_up: bool = False,
        max_ticks: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ):
        if not interval_s > 0 or max_ticks < 1:
            raise ValueError(f"a pacer needs interval_s > 0 and max_ticks >= 1, got {interval_s}, {max_ticks}")
        self.interval_s = float(interval_s)
        self.catch_up = catch_up
        self.max_ticks = max_ticks if catch_up else 1
        self._clock = clock
        self._sleep = sleep
        self._last = 0.0  # the tick the schedule counts from
        self._first: float | None = None  # when the first tick is due (set by start)
        self.started = False

    def start(self, first_in_s: float | None = None) -> None:
        """Anchor the schedule now; the first tick is due after one interval (or ``first_in_s``; 0: at once)."""
        now = self._clock()
        self._last = now
        self._first = now + (self.interval_s if first_in_s is None else max(0.0, first_in_s))
        self.started = True

    def next_due(self, interval_s: float | None = None) -> float:
        """Monotonic time of the next tick if it is spaced by ``interval_s`` (default: the pacer's interval)."""
        if not self.started:
            self.start()
        if self._first is not None:
            return self._first
        return self._last + (self.interval_s if interval_s is None else interval_s)

    async def wait(self, interval_s: float | None = None) -> int:
        """Sleep until the next tick; return the number of ticks due (1 unless catching up)."""
        step = self.interval_s if interval_s is None else max(interval_s, 1e-9)
        target = self.next_due(step)
        self._first = None
        now = self._clock()
        late = now >= target
        if not late:
            await self._sleep(target - now)
            now = self._clock()
        if not self.catch_up:
            self._last = now if late else target
            return 1
        ticks = min(1 + int((now - target) / step + 1e-9), self.max_ticks)  # 1e-9: 0.3 / 0.1 is 2.999...
        self._last = target + (ticks - 1) * step
        return ticks
