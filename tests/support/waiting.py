"""Wait for a condition instead of sleeping a fixed time: as fast as the condition allows, bounded. The one helper
every test uses (in threads: ``await asyncio.to_thread(wait_until, ...)``)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(cond: Callable[[], object], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    """Poll ``cond`` until it is true; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)
