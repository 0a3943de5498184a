"""Store -> MQTT: read unsent rows, pack them into messages, publish QoS1, mark sent only on PUBACK.

Delivery is at-least-once. A publish that fails or times out is published again (its seq range goes on a retry
list); a crash before the store learns of a PUBACK means that message is sent again after restart. Duplicates are
fine downstream (``(rig, seq)``), gaps are not. At most ``max_in_flight`` publishes are unacknowledged at once, so
memory is bounded whatever the link does: an outage only grows the store.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from agent.config import UplinkConfig
from agent.faultpoints import faultpoint
from agent.store.worker import StoreWorker
from agent.uplink.envelope import encode_cycles, encode_events, pack_list, pack_readings
from agent.uplink.mqtt import MqttLink, puback_ok

log = logging.getLogger("agent.uplink")

# A readings message counts as full (sent without waiting out the linger) from this share of the target size on.
# IoT Core meters rules and actions per 5 KB of message, so a message sent at 85 % of the target paid for units it
# left empty (docs/cost-per-cell-month.md); with a long linger, waiting for the last few batches costs nothing.
FULL_FRACTION = 0.97

TOPIC_NAMES = {"readings": "telemetry", "events": "events", "cycles": "cycles", "health": "health"}


@dataclass(slots=True)
class Job:
    stream: str
    lo: int
    hi: int
    n: int
    payload: bytes
    partial: bool = False  # smaller than the target size: may linger for more data
    ts_max_ms: int = 0
    ts_min_ms: int = 0
    t_sent: float = 0.0


@dataclass
class UplinkStats:
    published: int = 0
    acked_msgs: int = 0
    acked_readings: int = 0
    acked_bytes: int = 0
    errors: int = 0
    retries: int = 0
    latency_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20_000))
    latency_oldest_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20_000))


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


class Uplink:
    def __init__(
        self,
        cfg: UplinkConfig,
        rig: str,
        worker: StoreWorker,
        link: MqttLink,
        clock_ms=lambda: time.time_ns() // 1_000_000,
    ):
        self.cfg = cfg
        self.rig = rig
        self.worker = worker
        self.link = link
        self.clock_ms = clock_ms
        self.cursor = {"readings": 0, "events": 0, "cycles": 0}
        self.retry: collections.deque[tuple[str, int, int]] = collections.deque()
        self.in_flight = 0
        self.wake = asyncio.Event()
        self._slot = asyncio.Event()
        self._acked: dict[str, list[tuple[int, int]]] = {"readings": [], "events": [], "cycles": []}
        self._acks_pending = asyncio.Event()
        self.stats = UplinkStats()
        self._bpr = 32.0 if cfg.envelope == "compact" else 130.0
        self._pending_since: float | None = None
        self.flush_now = False  # set while draining at shutdown: no lingering

    def topic(self, stream: str) -> str:
        base = f"{self.cfg.topic_prefix}/{self.rig}/{TOPIC_NAMES[stream]}"
        if stream == "readings" and self.cfg.basic_ingest_rule:
            return f"$aws/rules/{self.cfg.basic_ingest_rule}/{base}"
        return base

    # ---------------------------------------------------------------- building jobs (store thread)
    def _build(self, stream: str, after: int, upto: int | None, partial_ok: bool) -> Job | None:
        store = self.worker.store
        target = self.cfg.message_target_bytes
        backlog_bytes = (store.last_seq["readings"] - after) * self._bpr
        if upto is None and backlog_bytes > 4 * self.cfg.backlog_message_bytes:
            target = max(target, self.cfg.backlog_message_bytes)  # after an outage: fewer, larger messages
        if stream == "readings":
            limit = int(target / self._bpr * 1.25) + 8 if upto is None else upto - after
            rows = store.read_readings(after_seq=after, limit=limit, upto_seq=upto)
            if not len(rows):
                return None
            payload, n = pack_readings(self.rig, rows, store.cell_ids, self.cfg.envelope, target, self._bpr)
            self._bpr = 0.8 * self._bpr + 0.2 * (len(payload) / n)
            partial = partial_ok and n == len(rows) and len(payload) < target * FULL_FRACTION
            return Job(
                "readings",
                int(rows.seq[0]),
                int(rows.seq[n - 1]),
                n,
                payload,
                partial,
                int(rows.ts_ms[:n].max()),
                int(rows.ts_ms[:n].min()),
            )
        reader = store.read_events if stream == "events" else store.read_cycles
        items = reader(after_seq=after, upto_seq=upto, limit=200)
        if not items:
            return None
        encode = encode_events if stream == "events" else encode_cycles
        payload, n = pack_list(encode, self.rig, items, target)
        return Job(stream, items[0]["seq"], items[n - 1]["seq"], n, payload, False, int(items[n - 1]["ts"]))

    def _next_job(
        self, retry: tuple[str, int, int] | None, cursors: dict[str, int]
    ) -> tuple[Job | None, dict[str, int]]:
        """Runs on the store thread. Returns the job and the committed seq counters as of the read."""
        seen = dict(self.worker.store.last_seq)
        if retry is not None:
            stream, lo, hi = retry
            return self._build(stream, lo - 1, hi, partial_ok=False), seen
        for stream in ("events", "cycles", "readings"):
            job = self._build(stream, cursors[stream], None, partial_ok=stream == "readings")
            if job is not None:
                return job, seen
        return None, seen

    # ---------------------------------------------------------------- main loop (asyncio)
    async def run(self) -> None:
        flusher = asyncio.create_task(self._flush_acks_loop(), name="uplink-acks")
        try:
            while True:
                await self.link.connected.wait()
                while self.in_flight >= self.cfg.max_in_flight:
                    self._slot.clear()
                    await self._slot.wait()
                if not self.retry and not self.flush_now:
                    wait_s = self._idle_wait_s()
                    if wait_s is not None:
                        await self._sleep_until_woken(wait_s)
                        continue
                retry = self.retry.popleft() if self.retry else None
                job, seen = await self.worker.call(self._next_job, retry, dict(self.cursor))
                if job is None:
                    if retry is None:
                        # Nothing unsent up to what the store had committed when it looked (rows acknowledged in
                        # an earlier run, or dropped by the cap): move past them.
                        for stream, last in seen.items():
                            self.cursor[stream] = max(self.cursor[stream], last)
                        self._pending_since = None
                    continue
                if job.partial and not self.flush_now:
                    left = self._linger_left_s()
                    if left > 0:  # the estimate said full, the message says part-full: keep lingering
                        await self._sleep_until_woken(left)
                        continue
                if job.stream == "readings":
                    self._pending_since = None
                if retry is not None:
                    # Rows of the retried range that no longer fit go back on the list.
                    if job.hi < retry[2]:
                        self.retry.appendleft((retry[0], job.hi + 1, retry[2]))
                else:
                    self.cursor[job.stream] = job.hi
                self._publish(job)
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)

    def _idle_wait_s(self) -> float | None:
        """How long to wait before building a message, judged from the store's seq counters (no SQL, no
        encoding): None when a message should be built now. Clears ``wake`` before judging, so new data that
        arrives after the judgement wakes the wait."""
        self.wake.clear()
        last = self.worker.store.last_seq
        if last["events"] > self.cursor["events"] or last["cycles"] > self.cursor["cycles"]:
            return None
        pending = last["readings"] - self.cursor["readings"]
        if pending <= 0:
            self._pending_since = None
            return 1.0
        if pending * self._bpr >= FULL_FRACTION * self.cfg.message_target_bytes:
            return None
        left = self._linger_left_s()
        return None if left <= 0 else left

    def _linger_left_s(self) -> float:
        now = time.monotonic()
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

    def _publish(self, job: Job) -> None:
        job.t_sent = time.monotonic()
        self.in_flight += 1
        self.stats.published += 1
        loop = asyncio.get_running_loop()
        try:
            fut = self.link.publish(self.topic(job.stream), job.payload)
        except Exception as exc:  # noqa: BLE001 - the SDK refused synchronously; retry later
            self._done(job, None, exc)
            return
        faultpoint("uplink.after_publish")

        def done(f) -> None:  # runs on the SDK's thread
            try:
                loop.call_soon_threadsafe(self._on_future, job, f)
            except RuntimeError:  # the loop is closed: shutting down, the store will resend this range
                pass

        fut.add_done_callback(done)

    def _on_future(self, job: Job, fut) -> None:
        try:
            result = fut.result()
            self._done(job, result, None)
        except Exception as exc:  # noqa: BLE001 - AWS_ERROR_MQTT_TIMEOUT, user-requested stop, ...
            self._done(job, None, exc)

    def _done(self, job: Job, result: Any, exc: BaseException | None) -> None:
        self.in_flight -= 1
        self._slot.set()
        if exc is None and puback_ok(result):
            faultpoint("uplink.after_puback")
            self._acked[job.stream].append((job.lo, job.hi))
            self._acks_pending.set()
            self.stats.acked_msgs += 1
            self.stats.acked_bytes += len(job.payload)
            if job.stream == "readings":
                self.stats.acked_readings += job.n
                now = self.clock_ms()
                self.stats.latency_ms.append(now - job.ts_max_ms)
                self.stats.latency_oldest_ms.append(now - job.ts_min_ms)
            return
        self.stats.errors += 1
        self.stats.retries += 1
        reason = (
            exc if exc is not None else f"PUBACK reason {getattr(getattr(result, 'puback', None), 'reason_code', '?')}"
        )
        if self.stats.errors <= 5 or self.stats.errors % 100 == 0:
            log.warning(
                "publish failed stream=%s seq=%d..%d error=%s (will publish again; errors so far %d)",
                job.stream,
                job.lo,
                job.hi,
                _short(reason),
                self.stats.errors,
            )
        self.retry.append((job.stream, job.lo, job.hi))
        self.wake.set()

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
                await self.worker.call(self.worker.store.mark_sent, stream, merged)
                faultpoint("uplink.after_mark_sent")

    async def drain(self, timeout_s: float) -> None:
        """At shutdown: wait (bounded) for in-flight publishes, then record their acknowledgements."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight > 0 and time.monotonic() < deadline:
            self._slot.clear()
            try:
                async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                    await self._slot.wait()
            except TimeoutError:
                break
        await self.flush_acks()


def _short(exc: Any) -> str:
    name = getattr(exc, "name", None)
    return str(name or exc)[:200]
