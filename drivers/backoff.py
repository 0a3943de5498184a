"""One exponential backoff for every retry loop in the project (driver restarts, device probes, task restarts,
rejected publishes).

Delays grow by ``factor`` from ``initial_s`` up to ``max_s``. ``jitter`` spreads each delay over
``[delay * (1 - jitter), delay]`` ("equal jitter" when 0.5), so a fleet of rigs that lost the same broker does not
come back in lock-step. A run that lasted ``stable_after_s`` resets the sequence (``succeeded_after``), so a
driver that fails once a day restarts quickly each time. Pure arithmetic with an injectable random source: tests
drive it without sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial_s: float = 1.0
    max_s: float = 60.0
    factor: float = 2.0
    jitter: float = 0.0  # 0: exact doubling; 0.5: each delay drawn from [delay/2, delay]
    stable_after_s: float | None = None  # a run at least this long resets the sequence
    rand: Callable[[], float] = field(default=random.random, repr=False)
    attempts: int = 0  # consecutive failures so far

    def __post_init__(self) -> None:
        if not (self.initial_s > 0 and self.max_s >= self.initial_s and self.factor >= 1 and 0 <= self.jitter <= 1):
            raise ValueError(
                f"backoff needs 0 < initial_s <= max_s, factor >= 1, 0 <= jitter <= 1; got initial_s="
                f"{self.initial_s} max_s={self.max_s} factor={self.factor} jitter={self.jitter}"
            )

    @property
    def ceiling_s(self) -> float:
        """The un-jittered delay the next failure gets."""
        return min(self.initial_s * self.factor ** min(self.attempts, 64), self.max_s)

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next attempt."""
        ceiling = self.ceiling_s
        self.attempts += 1
        return ceiling * (1.0 - self.jitter * self.rand())

    def reset(self) -> None:
        self.attempts = 0

    def succeeded_after(self, run_s: float) -> None:
        """A run ended after ``run_s`` seconds: if it was stable, the next failure starts from ``initial_s``."""
        if self.stable_after_s is not None and run_s >= self.stable_after_s:
            self.reset()
