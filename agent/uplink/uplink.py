"""Store -> MQTT: read unsent rows, pack them into messages, publish QoS1, mark sent only on PUBACK.

Delivery is at-least-once. A publish without a PUBACK (the link failed it, or none came within the ack timeout)
is published again at once (its seq range goes on a retry list); a crash before the store learns of a PUBACK
means that message is sent again after restart. Duplicates are fine downstream (``(rig, seq)``), gaps are not.
At most ``max_in_flight`` publishes are unacknowledged at once, so memory is bounded whatever the link does: an
outage only grows the store. Two brakes keep a broken link from spinning: a PUBACK that refuses for good holds
its stream with backoff (rejections.py), and a run of failures longer than the in-flight window with no success
in between pauses publishing with a short backoff.

Everything here runs on the event loop and uses the loop's clock (``loop.time()``), so tests drive it with an
in-process fake link in virtual time. Store reads run on the store thread through the worker (jobs.py).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.config import UplinkConfig
from agent.faultpoints import faultpoint
from agent.store.schema import STREAMS
from agent.store.store import Store
from agent.store.worker import StoreWorker
from agent.uplink import jobs
from agent.uplink.jobs import FULL_FRACTION, Job, Packing
from agent.uplink.link import PERMANENT, Link, PublishFailed, accepted, reason_name
from agent.uplink.rejections import Rejections
from drivers.backoff import Backoff
from drivers.base import Event

log = logging.getLogger("agent.uplink")

TOPIC_NAMES = {"readings": "telemetry", "events": "events", "cycles": "cycles", "health": "health"}


def topic(cfg: UplinkConfig, rig: str, stream: str) -> str:
    """``<prefix>/<rig>/<name>``; telemetry and health through Basic Ingest when their rule is configured (no IoT
    Core messaging charge: docs/cost-per-cell-month.md)."""
    base = f"{cfg.topic_prefix}/{rig}/{TOPIC_NAMES[stream]}"
    rule = {"readings": cfg.basic_ingest_rule, "health": cfg.basic_ingest_health_rule}.get(stream)
    return f"$aws/rules/{rule}/{base}" if rule else base


ACK_GRACE_S = 2.0  # beyond the SDK's own ack timeout: the uplink's backstop, and the only one with a fake link


@dataclass
class UplinkStats:
    published: int = 0
    acked_msgs: int = 0
    acked_readings: int = 0
    acked_bytes: int = 0
    errors: int = 0
    retries: int = 0
    latency_ms: collections.deque[int] = field(default_factory=lambda: collections.deque(maxlen=20_000))
    latency_oldest_ms: collections.deque[int] = field(default_factory=lambda: collections.deque(maxlen=20_000))


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _mark_sent(store: Store, stream: str, ranges: list[tuple[int, int]]) -> None:
    store.acker.mark_sent(stream, ranges)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Uplink:
    def __init__(
        self,
        cfg: UplinkConfig,
        rig: str,
        worker: StoreWorker,
        link: Link,
        emit: Callable[[Event], None] = lambda e: None,
        clock_ms: Callable[[], int] = _wall_ms,
        rand: Callable[[], float] = random.random,
    ):
        self.cfg = cfg
        self.rig = rig
        self.worker = worker
        self.link = link
        self.clock_ms = clock_ms
        self.cursor = {s: 0 for s in STREAMS}
        self.retry: collections.deque[tuple[str, int, int]] = collections.deque()
        self.in_flight = 0
        self.wake = asyncio.Event()
        self.stats = UplinkStats()
        self.rejections = Rejections(emit, rand)
        self.packing = Packing(
            rig,
            cfg.envelope,
            cfg.message_target_bytes,
            cfg.backlog_message_bytes,
            32.0 if cfg.envelope == "compact" else 130.0,
        )
        self.ack_timeout_s = cfg.ack_timeout_s + ACK_GRACE_S
        self._slot = asyncio.Event()
        self._acked: dict[str, list[tuple[int, int]]] = {s: [] for s in STREAMS}
        self._acks_pending = asyncio.Event()
        self._pending_since: float | None = None
        self._draining = False  # at shutdown: no lingering
        self._failures = 0  # publishes failed since the last success
        self._pause = Backoff(initial_s=0.05, max_s=5.0, jitter=0.5, rand=rand)
        self._paused_until = 0.0

    def topic(self, stream: str) -> str:
        return topic(self.cfg, self.rig, stream)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # ---------------------------------------------------------------- main loop
    async def run(self) -> None:
        flusher = asyncio.create_task(self._flush_acks_loop(), name="uplink-acks")
        try:
            while True:
                await self.link.connected.wait()
                while self.in_flight >= self.cfg.max_in_flight:
                    self._slot.clear()
                    await self._slot.wait()
                now = self._now()
                retry = self._take_retry(now)
                if retry is None:
                    wait_s = self._idle_wait_s(now)
                    if wait_s is not None:
                        await self._sleep_until_woken(wait_s)
                        continue
                streams = tuple(s for s in jobs.STREAM_ORDER if self.rejections.may_publish(s, now))
                job, self.packing, seen = await self.worker.call(
                    jobs.next_job, self.packing, retry, dict(self.cursor), streams
                )
                if job is None:
                    if retry is None:
                        # Nothing unsent up to what the store had committed when it looked (rows acknowledged in
                        # an earlier run, or dropped by the cap): move past them, in the streams searched.
                        for stream in streams:
                            self.cursor[stream] = max(self.cursor[stream], seen[stream])
                        self._pending_since = None
                    continue
                if job.partial and not self._draining:
                    left = self._linger_left_s(self._now())
                    if left > 0:  # the estimate said full, the message says part-full: keep lingering
                        await self._sleep_until_woken(left)
                        continue
                if job.stream == "readings":
                    self._pending_since = None
                if retry is not None:
                    if job.hi < retry[2]:  # rows of the retried range that no longer fit go back on the list
                        self.retry.appendleft((retry[0], job.hi + 1, retry[2]))
                else:
                    self.cursor[job.stream] = job.hi
                self._publish(job)
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)

    def _take_retry(self, now: float) -> tuple[str, int, int] | None:
        if now < self._paused_until:
            return None
        for k, entry in enumerate(self.retry):
            if self.rejections.may_publish(entry[0], now):
                del self.retry[k]
                return entry
        return None

    def _idle_wait_s(self, now: float) -> float | None:
        """How long to wait before building a message, judged from the committed seq counters the worker keeps
        on this side (no SQL, no encoding): None when a message should be built now. Clears ``wake`` before
        judging, so new data that arrives after the judgement wakes the wait."""
        self.wake.clear()
        waits = [1.0]
        if now < self._paused_until:
            return self._paused_until - now
        release = self.rejections.next_release()
        if release is not None:
            waits.append(release - now)
        last = self.worker.committed
        may = self.rejections.may_publish
        if any(last[s] > self.cursor[s] and may(s, now) for s in ("events", "cycles")):
            return None
        pending = last["readings"] - self.cursor["readings"]
        if pending <= 0:
            self._pending_since = None
        elif may("readings", now):
            full = pending * self.packing.bytes_per_reading >= FULL_FRACTION * self.cfg.message_target_bytes
            if full or self._draining:
                return None
            waits.append(self._linger_left_s(now))
        wait = min(waits)
        return None if wait <= 0 else wait

    def _linger_left_s(self, now: float) -> float:
        if self._pending_since is None:
            self._pending_since = now
        return self.cfg.linger_ms / 1000.0 - (now - self._pending_since)

    async def _sleep_until_woken(self, timeout: float) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that races with the
        # event being set, and this loop would then never stop (seen at shutdown under load).
        try:
            async with asyncio.timeout(timeout):
                await self.wake.wait()
        except TimeoutError:
            pass

    # ---------------------------------------------------------------- publishing and outcomes
    def _publish(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        job.t_sent = loop.time()
        probe = self.rejections.sending(job.stream)
        self.in_flight += 1
        self.stats.published += 1
        try:
            fut = self.link.publish(self.topic(job.stream), job.payload)
        except Exception as exc:  # noqa: BLE001 - a link must fail the future, but never let one kill the loop
            fut = loop.create_future()
            fut.set_exception(PublishFailed(repr(exc)))
        faultpoint("uplink.after_publish")
        timer = loop.call_later(self.ack_timeout_s, self._ack_timed_out, job, probe)
        fut.add_done_callback(lambda f: self._on_result(job, probe, f, timer))

    def _ack_timed_out(self, job: Job, probe: bool) -> None:
        if not job.settled:
            self._settle(job, probe, None, PublishFailed(f"no PUBACK within {self.ack_timeout_s:.0f} s"))

    def _on_result(self, job: Job, probe: bool, fut: asyncio.Future[int], timer: asyncio.TimerHandle) -> None:
        timer.cancel()
        if fut.cancelled():
            outcome: tuple[int | None, BaseException | None] = (None, PublishFailed("publish cancelled"))
        elif (exc := fut.exception()) is not None:  # also marks the exception retrieved
            outcome = (None, exc)
        else:
            outcome = (fut.result(), None)
        if not job.settled:  # else: the ack timeout came first and the range is already on the retry list
            self._settle(job, probe, *outcome)

    def _settle(self, job: Job, probe: bool, code: int | None, exc: BaseException | None) -> None:
        job.settled = True
        self.in_flight -= 1
        self._slot.set()
        now = self._now()
        if code is not None and accepted(code):
            faultpoint("uplink.after_puback")
            self._acked[job.stream].append((job.lo, job.hi))
            self._acks_pending.set()
            self.stats.acked_msgs += 1
            self.stats.acked_bytes += len(job.payload)
            if job.stream == "readings":
                self.stats.acked_readings += job.n
                wall = self.clock_ms()
                self.stats.latency_ms.append(wall - job.ts_max_ms)
                self.stats.latency_oldest_ms.append(wall - job.ts_min_ms)
            self._failures = 0
            self._pause.reset()
            self.rejections.accepted(job.stream, now)
            return
        self.stats.errors += 1
        self.stats.retries += 1
        self._failures += 1
        if code is not None and code in PERMANENT:
            self.rejections.rejected(job.stream, self.topic(job.stream), code, probe, now)
        else:
            if probe:
                self.rejections.probe_lost(job.stream)
            if self._failures > self.cfg.max_in_flight:  # failing with no success in a whole window: pause
                self._paused_until = now + self._pause.next_delay()
        if self.stats.errors <= 5 or self.stats.errors % 100 == 0:
            log.warning(
                "publish failed stream=%s seq=%d..%d error=%s (will publish again; errors so far %d)",
                job.stream,
                job.lo,
                job.hi,
                f"PUBACK 0x{code:02x} {reason_name(code)}" if code is not None else _short(exc),
                self.stats.errors,
            )
        self.retry.append((job.stream, job.lo, job.hi))
        self.wake.set()

    def publish_health(self, payload: bytes) -> bool:
        """Best effort, only while connected: the outcome is ignored (the next health message replaces a lost
        one) and it takes no in-flight slot from the store's messages. True when handed to the link."""
        if not self.link.connected.is_set():
            return False
        try:
            fut = self.link.publish(self.topic("health"), payload)
        except Exception as exc:  # noqa: BLE001 - health is best effort
            log.debug("health publish failed: %r", exc)
            return False
        fut.add_done_callback(_ignore_outcome)
        return True

    # ---------------------------------------------------------------- acknowledgements
    async def _flush_acks_loop(self) -> None:
        while True:
            await self._acks_pending.wait()
            await asyncio.sleep(0.2)  # batch the acknowledgements of many messages into one transaction
            await self.flush_acks()

    async def flush_acks(self) -> None:
        self._acks_pending.clear()
        for stream, ranges in self._acked.items():
            if ranges:
                merged = merge_ranges(ranges)
                ranges.clear()
                await self.worker.call(_mark_sent, stream, merged)
                faultpoint("uplink.after_mark_sent")

    # ---------------------------------------------------------------- shutdown and health
    def caught_up(self) -> bool:
        """Everything committed (as the worker last saw it) was published and acknowledged."""
        last = self.worker.committed
        return self.in_flight == 0 and not self.retry and all(self.cursor[s] >= last[s] for s in STREAMS)

    async def publish_backlog(self, timeout_s: float) -> None:
        """At shutdown, while the uplink task still runs: publish what is left without lingering, until caught
        up, the link drops or ``timeout_s`` passes."""
        self._draining = True
        await self.worker.ping()  # a commit still running on the store thread (a driver just stopped) lands first
        self.wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline and self.link.connected.is_set() and not self.caught_up():
            await asyncio.sleep(0.05)

    async def settle(self, timeout_s: float) -> int:
        """After the uplink task stopped: wait (bounded) for in-flight publishes, then record their acks; returns
        how many are still unanswered (their rows stay unsent and go again after restart)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.in_flight > 0 and loop.time() < deadline:
            self._slot.clear()
            try:
                async with asyncio.timeout(max(0.01, deadline - loop.time())):
                    await self._slot.wait()
            except TimeoutError:
                break
        await self.flush_acks()
        return self.in_flight

    def health(self) -> dict[str, Any]:
        """The uplink's part of agent health (the rates are computed by the reader: health.RateMeter)."""
        return {
            "acked_msgs": self.stats.acked_msgs,
            "acked_readings": self.stats.acked_readings,
            "publish_errors": self.stats.errors,
            "publish_rejected": self.rejections.total,
            "publish_held": self.rejections.health(self._now()),
        }


def _ignore_outcome(fut: asyncio.Future[int]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.debug("health publish failed: %r", fut.exception())


def _short(exc: Any) -> str:
    name = getattr(exc, "name", None)
    return str(name or exc)[:200]
