"""The uplink's logic without a broker: linger, packing, the backlog switch, ack timeout, retry, rejection backoff.

A real Store (SQLite) on an inline worker, an in-process fake link (tests/support/fakelink.py) and virtual time
(tests/support/vtime.py): minutes of linger, backoff and ack timeouts run in milliseconds, in the same order
every run. What only a real broker shows (TLS, the SDK's reconnects, PUBACKs over the wire) stays in
test_e2e_uplink.py and tests/reliability.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Self

import numpy as np
import pytest

from agent.config import UplinkConfig
from agent.store import Store
from agent.store.worker import StoreWorker
from agent.uplink.link import PublishFailed
from agent.uplink.rejections import BACKOFF_MAX_S
from agent.uplink.uplink import Uplink
from drivers.base import Event, ReadingBatch
from tests.support import vtime
from tests.support.fakelink import FakeLink

RIG = "rig-1"
CELLS = tuple(f"c{i}" for i in range(8))


def readings(ticks: int, t0_ms: int = 1_700_000_000_000) -> ReadingBatch:
    n = len(CELLS)
    k = np.arange(ticks * n, dtype=np.float64)
    return ReadingBatch.build(
        CELLS,
        np.tile(np.arange(n), ticks),
        np.repeat(t0_ms + 100 * np.arange(ticks), n),
        3.6 + k * 1e-4,
        -2.0 + k * 1e-4,
        25.0 + k * 1e-3,
    )


class Harness:
    def __init__(self, tmp_path: Any, link: FakeLink, **cfg: Any):
        self.store = Store.open(tmp_path / "s.db", synchronous="NORMAL", reserve_bytes=0)
        self.worker = StoreWorker(lambda: self.store, executor=vtime.InlineExecutor())
        self.events: list[Event] = []
        self.link = link
        self.cfg = UplinkConfig(**{"linger_ms": 1000, "ack_timeout_s": 10, **cfg})
        self.uplink = Uplink(self.cfg, RIG, self.worker, link, emit=self.events.append, rand=random.Random(7).random)

    async def __aenter__(self) -> Self:
        await self.worker.open()
        self.task = asyncio.create_task(self.uplink.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.worker.close()

    async def append(self, ticks: int, events: tuple[Event, ...] = ()) -> None:
        await self.worker.call(Store.append, readings(ticks), "test", list(events))
        self.uplink.wake.set()

    def unsent(self, stream: str = "readings") -> int:
        return int(self.store.conn.execute(f"SELECT count(*) FROM {stream} WHERE sent=0").fetchone()[0])

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def now() -> float:
    return asyncio.get_running_loop().time()


def test_a_part_full_message_lingers_then_goes(tmp_path):
    async def main() -> None:
        link = FakeLink()
        async with Harness(tmp_path, link, linger_ms=1000) as h:
            await h.append(2)  # 16 readings: far below the target size
            await asyncio.sleep(0.99)
            assert link.on("/telemetry") == []
            await asyncio.sleep(0.02)
            [p] = link.on("/telemetry")
            assert p.seqs() == list(range(1, 17)) and p.t == pytest.approx(1.0)
            await asyncio.sleep(0.3)  # acknowledgements are batched for 0.2 s, then one transaction
            assert h.unsent() == 0

    vtime.run(main())


def test_full_messages_go_at_once_packed_to_the_target_size(tmp_path):
    async def main() -> None:
        link = FakeLink()
        target = 5000
        async with Harness(tmp_path, link, message_target_bytes=target, linger_ms=1000) as h:
            await h.append(100)  # 800 readings: several full messages and a part-full rest
            await asyncio.sleep(0)
            await asyncio.sleep(0.5)
            at_once = link.on("/telemetry")
            assert len(at_once) >= 3 and all(p.t == 0.0 for p in at_once)
            assert all(0.85 * target <= len(p.payload) <= target for p in at_once)
            await asyncio.sleep(1.0)  # the rest lingered and then went
            sent = link.on("/telemetry")
            assert len(sent) == len(at_once) + 1 and len(sent[-1].payload) < 0.85 * target
            seqs = [s for p in sent for s in p.seqs()]
            assert seqs == list(range(1, 801))  # in order, no gap, no duplicate
            await asyncio.sleep(0.3)
            assert h.unsent() == 0

    vtime.run(main())


def test_a_backlog_goes_in_larger_messages_then_back_to_the_target(tmp_path):
    async def main() -> None:
        link = FakeLink()
        target, backlog = 2000, 16_000
        async with Harness(tmp_path, link, message_target_bytes=target, backlog_message_bytes=backlog) as h:
            await h.append(1250)  # 10,000 readings: ~320 KB compact, far more than 4 backlog messages
            await asyncio.sleep(0.5)
            sizes = [len(p.payload) for p in link.on("/telemetry")]
            assert sizes[0] > 0.85 * backlog and sizes[0] <= backlog  # draining: large messages
            assert max(sizes[-3:]) <= target  # the tail of the backlog: back to the metered target size
            seqs = [s for p in link.on("/telemetry") for s in p.seqs()]
            await asyncio.sleep(2.0)
            seqs = [s for p in link.on("/telemetry") for s in p.seqs()]
            assert seqs == list(range(1, 10_001))
            assert h.unsent() == 0

    vtime.run(main())


def test_no_puback_within_the_ack_timeout_publishes_again(tmp_path):
    async def main() -> None:
        answers = iter([None])  # the first publish is never answered; then the broker acknowledges
        link = FakeLink(lambda topic, payload: next(answers, 0))
        async with Harness(tmp_path, link, linger_ms=0, ack_timeout_s=10) as h:
            await h.append(2)
            timeout_s = h.uplink.ack_timeout_s
            await asyncio.sleep(timeout_s - 0.1)
            assert len(link.on("/telemetry")) == 1 and h.uplink.in_flight == 1 and h.unsent() == 16
            await asyncio.sleep(0.2)
            first, again = link.on("/telemetry")
            assert again.seqs() == first.seqs() and again.t == pytest.approx(timeout_s)
            await asyncio.sleep(0.3)
            assert h.unsent() == 0 and h.uplink.stats.errors == 1 and h.uplink.in_flight == 0
            first.future.set_result(0)  # a PUBACK that comes after the timeout changes nothing
            await asyncio.sleep(0.3)
            assert h.uplink.in_flight == 0 and h.uplink.stats.acked_msgs == 1

    vtime.run(main())


@pytest.mark.parametrize("failure", [PublishFailed("connection lost"), 0x80, 0x83], ids=repr)
def test_a_transient_failure_is_published_again_at_once(tmp_path, failure):
    async def main() -> None:
        answers = iter([failure])
        link = FakeLink(lambda topic, payload: next(answers, 0))
        async with Harness(tmp_path, link, linger_ms=0) as h:
            await h.append(2)
            await asyncio.sleep(0.5)
            first, again = link.on("/telemetry")
            assert again.seqs() == first.seqs() and again.t == first.t == 0.0  # the fast path: no wait
            assert h.unsent() == 0 and h.uplink.health()["publish_rejected"] == 0
            assert "uplink.publish_rejected" not in h.kinds()

    vtime.run(main())


@pytest.mark.parametrize("code", [0x87, 0x90, 0x97])
def test_a_permanent_rejection_backs_off_says_so_once_and_recovers(tmp_path, code):
    """14.4: the broker refuses telemetry for good (e.g. the IoT policy lacks the topic). One probe per backoff
    step (exponential, jittered), one event, visible in health; events still flow; all readings go once the
    broker accepts again."""

    async def main() -> None:
        refusing = True
        link = FakeLink(lambda topic, payload: code if refusing and topic.endswith("/telemetry") else 0)
        async with Harness(tmp_path, link, linger_ms=0) as h:
            for _ in range(12):  # ten minutes, with new readings every 50 s
                await h.append(2)
                await asyncio.sleep(50.0)
            probes = link.on("/telemetry")
            gaps = np.diff([p.t for p in probes])
            ceilings = np.minimum(2.0 ** np.arange(len(gaps)), BACKOFF_MAX_S)
            assert 6 <= len(probes) <= 15, [p.t for p in probes]
            assert np.all(gaps >= 0.5 * ceilings - 1e-9) and np.all(gaps <= ceilings + 1e-9)  # equal jitter
            assert h.kinds().count("uplink.publish_rejected") == 1
            [ev] = [e for e in h.events if e.kind == "uplink.publish_rejected"]
            assert ev.data["reason_code"] == code and ev.data["stream"] == "readings"
            health = h.uplink.health()
            assert health["publish_rejected"] == len(probes)
            [held] = health["publish_held"]
            assert held["stream"] == "readings" and held["reason_code"] == code and held["held_s"] >= 590

            await h.worker.call(Store.append_events, [Event("test.alarm", "still flows", level="alarm")])
            h.uplink.wake.set()
            await asyncio.sleep(1.0)
            assert h.unsent("events") == 0  # another stream is not held back by telemetry's refusal
            assert h.unsent() == 12 * 16

            refusing = False  # the policy is fixed: the next probe succeeds and everything drains
            await asyncio.sleep(BACKOFF_MAX_S + 5)
            assert h.unsent() == 0 and h.uplink.health()["publish_held"] == []
            assert h.kinds().count("uplink.publish_recovered") == 1
            delivered = sorted({s for p in link.on("/telemetry") if p.future.result() == 0 for s in p.seqs()})
            assert delivered == list(range(1, 12 * 16 + 1))

    vtime.run(main())


class Spinning(BaseException):
    """Raised by the fake link past any sane number of publishes: stops a spinning uplink task at once."""


def test_a_link_that_fails_every_publish_never_spins(tmp_path):
    async def main() -> None:
        def refuse(topic: str, payload: bytes) -> PublishFailed:
            if len(link.published) > 2000:
                raise Spinning(f"{len(link.published)} publishes by t={now():.3f} s")
            return PublishFailed("refused by the client")

        link = FakeLink(refuse)
        async with Harness(tmp_path, link, linger_ms=0, max_in_flight=10) as h:
            await h.append(2)
            await asyncio.sleep(30.0)
            early = len(link.published)
            await asyncio.sleep(30.0)
            late = len(link.published) - early
            assert not h.task.done(), h.task.exception()
            assert 10 < early <= 200  # the fast path first, then a pause that grows to 5 s
            assert late <= 30 / 2.5 + 1, f"{late} publishes in 30 s: the uplink spins"
            assert h.unsent() == 16

    vtime.run(main())


def test_a_disconnect_fails_what_is_in_flight_and_all_of_it_goes_after_reconnect(tmp_path):
    async def main() -> None:
        link = FakeLink(lambda topic, payload: None)  # unanswered until the connection drops
        async with Harness(tmp_path, link, linger_ms=0, message_target_bytes=600) as h:
            await h.append(20)
            await asyncio.sleep(0.1)
            n = len(link.published)
            assert n >= 4 and h.uplink.in_flight == n
            link.disconnect()
            await h.append(5)
            await asyncio.sleep(30.0)
            assert len(link.published) == n  # nothing goes while disconnected; the store keeps it all
            link.answer = lambda topic, payload: 0
            link.reconnect()
            await asyncio.sleep(1.0)
            delivered = sorted(
                {s for p in link.published if p.future.done() and not p.future.exception() for s in p.seqs()}
            )
            assert delivered == list(range(1, 201)) and h.unsent() == 0

    vtime.run(main())


def test_in_flight_publishes_are_bounded(tmp_path):
    async def main() -> None:
        link = FakeLink(lambda topic, payload: None)
        async with Harness(tmp_path, link, linger_ms=0, message_target_bytes=600, max_in_flight=3) as h:
            await h.append(100)
            await asyncio.sleep(1.0)
            assert len(link.published) == 3 and h.uplink.in_flight == 3
            link.published[0].future.set_result(0)
            await asyncio.sleep(0.01)
            assert len(link.published) == 4  # one acknowledged, one more goes

    vtime.run(main())


def test_draining_at_shutdown_does_not_linger(tmp_path):
    async def main() -> None:
        link = FakeLink()
        async with Harness(tmp_path, link, linger_ms=60_000) as h:
            await h.append(2)
            await asyncio.sleep(1.0)
            assert link.on("/telemetry") == []  # lingering for a fuller message
            await h.uplink.publish_backlog(5.0)
            assert [p.t for p in link.on("/telemetry")] == [1.0] and h.uplink.caught_up()
            await h.uplink.settle(1.0)
            assert h.unsent() == 0

    vtime.run(main())
