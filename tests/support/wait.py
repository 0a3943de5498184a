"""Waiting on a condition with a bounded timeout: what tests do instead of fixed sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.05) -> None:
    """Poll ``cond`` until it holds; AssertionError naming ``what`` after ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(step_s)
