"""The shared parts under every driver and emulator, on their own: the pacer (with a fake clock, no sleeping),
device retry spacing with the shared Backoff, and SampledDriver's shared work around its hooks (a reader thread
or a task that dies makes ``read`` raise; ``close`` never raises and stops what ``open`` started)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from drivers.base import DriverConfig, DriverContext, DriverError, Event, ReadingBatch
from drivers.pacing import Pacer
from drivers.sampling import Deltas, SampledDriver
from drivers.stale import DeviceHealth


class FakeClock:
    """A monotonic clock the test moves; ``sleep`` advances it instead of waiting."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.slept.append(round(s, 9))
        self.now += s


def run(coro):
    return asyncio.run(coro)


def test_a_sampling_pacer_sleeps_to_each_tick_and_never_bursts() -> None:
    clock = FakeClock()
    p = Pacer(0.5, clock=clock, sleep=clock.sleep)
    p.start()
    assert [run(p.wait()) for _ in range(3)] == [1, 1, 1]
    assert clock.slept == [0.5, 0.5, 0.5] and clock.now == pytest.approx(101.5)
    clock.now += 2.0  # the caller was busy for four ticks
    slept = len(clock.slept)
    assert run(p.wait()) == 1 and len(clock.slept) == slept  # late: one tick at once, no burst of four
    assert run(p.wait()) == 1 and clock.slept[-1] == pytest.approx(0.5)  # the schedule restarted from then


def test_a_simulated_clock_catches_up_at_most_max_ticks_at_a_time() -> None:
    clock = FakeClock()
    p = Pacer(0.1, catch_up=True, max_ticks=4, clock=clock, sleep=clock.sleep)
    p.start()
    assert run(p.wait()) == 1
    clock.now += 1.0  # ten ticks late
    got = [run(p.wait()) for _ in range(4)]
    assert got[:3] == [4, 4, 2]  # the ten ticks due by then (100.2 .. 101.1 s), four at a time, none lost
    assert got[3] == 1 and clock.slept[-1] == pytest.approx(0.1)  # then back on the wall clock


def test_one_tick_spaced_differently_and_a_first_tick_at_once() -> None:
    clock = FakeClock()
    p = Pacer(1.0, clock=clock, sleep=clock.sleep)
    p.start(first_in_s=0.0)
    assert run(p.wait()) == 1 and clock.slept == []  # at once
    run(p.wait(4.0))  # a failing device: its backoff, not the poll interval
    run(p.wait())
    assert clock.slept == [4.0, 1.0]


@pytest.mark.parametrize(("interval_s", "max_ticks"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_a_pacer_refuses_nonsense(interval_s: float, max_ticks: int) -> None:
    with pytest.raises(ValueError, match="interval_s > 0"):
        Pacer(interval_s, max_ticks=max_ticks)


def test_device_retries_back_off_doubling_to_the_cap_and_reset_on_an_answer() -> None:
    events: list[str] = []
    h = DeviceHealth("dev", lambda kind, *a, **k: events.append(kind), 10_000, 0, retry_initial_s=0.5, retry_max_s=3)
    assert h.retry_delay_s(0.5) == 0.5  # healthy: the poll interval
    delays = []
    for t in range(6):
        h.report(t * 100, False, {"timeout": "no answer"})
        delays.append(h.retry_delay_s(0.5))
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert events.count("driver.device_fault") == 1  # one event when the fault starts, not one per retry
    h.ok(700)
    assert h.retry_delay_s(0.5) == 0.5 and h.failures == 0
    h.report(800, False, {"timeout": "again"})
    assert h.retry_delay_s(0.5) == 0.5  # the sequence starts over


def test_deltas_report_what_is_new_since_the_last_look() -> None:
    d = Deltas()
    assert d.since_last(frames=5, bad=1) == {"frames": 5, "bad": 1}
    assert d.since_last(frames=9, bad=1) == {"frames": 4, "bad": 0}


class Toy(SampledDriver):
    """A driver that is nothing but hooks, to watch the base do its part."""

    threaded = True

    def __init__(self, behaviour: str = "ok") -> None:
        self.events: list[Event] = []
        super().__init__(DriverConfig(type="toy", name="toy"), DriverContext(emit=self.events.append), None)
        self.behaviour = behaviour
        self.received = threading.Event()
        self.closed = 0

    @property
    def cells(self) -> tuple[str, ...]:
        return ("t1",)

    def _receive(self) -> None:
        self.received.set()
        if self.behaviour == "thread dies":
            raise OSError("adapter unplugged")
        threading.Event().wait(0.01)

    async def _sample(self, now_ms: int, ticks: int) -> ReadingBatch:
        if self.behaviour == "task dies":

            async def boom() -> None:
                raise RuntimeError("poll loop bug")

            self.start_task(boom(), "boom")
            await asyncio.sleep(0.05)
        return ReadingBatch.build(self.cells, [0], now_ms, [3.7], [0.0], [25.0])

    def _close_transport(self) -> None:
        self.closed += 1
        if self.behaviour == "close raises":
            raise OSError("already gone")

    def _failure_message(self, exc: BaseException) -> str:
        return f"toy transport failed: {exc}"


def test_a_dead_reader_thread_makes_read_raise_naming_it() -> None:
    async def main() -> str:
        drv = Toy("thread dies")
        await drv.open()
        try:
            await asyncio.to_thread(drv.received.wait, 5)
            for _ in range(100):
                try:
                    await drv.read()
                except DriverError as exc:
                    return str(exc)
                await asyncio.sleep(0.01)
            raise AssertionError("read kept returning after the reader thread died")
        finally:
            await drv.close()

    assert run(main()) == "toy transport failed: adapter unplugged"


def test_a_dead_task_makes_the_next_read_raise() -> None:
    async def main() -> None:
        drv = Toy("task dies")
        await drv.open()
        try:
            assert len(await drv.read()) == 1  # the read that started the doomed task still returns its batch
            with pytest.raises(DriverError, match="poll loop bug"):
                await drv.read()
        finally:
            await drv.close()

    run(main())


def test_close_never_raises_and_stops_the_thread() -> None:
    async def main() -> Toy:
        drv = Toy("close raises")
        await drv.open()
        await asyncio.to_thread(drv.received.wait, 5)
        assert drv._thread is not None and drv._thread.is_alive()
        thread = drv._thread
        await drv.close()  # _close_transport raises inside: close() must not
        assert not thread.is_alive()
        return drv

    drv = run(main())
    assert drv.closed == 1


def test_a_task_that_loses_its_cancellation_still_ends_on_close() -> None:
    """On Python 3.11 a cancellation can be lost inside asyncio.wait_for (pymodbus's request path): a polling
    loop must also end on ``stopping``, or close() leaves it running and asyncio.run() never returns."""

    class Stubborn(Toy):
        async def _open_transport(self) -> None:
            async def poll_loop() -> None:
                while not self.stopping:
                    try:
                        await asyncio.sleep(0.01)
                    except asyncio.CancelledError:
                        pass  # what a lost cancellation looks like from the loop's side

            self.start_task(poll_loop(), "poll")

    async def main() -> bool:
        drv = Stubborn()
        drv.threaded = False
        await drv.open()
        task = drv._tasks[0]
        await drv.close()
        return task.done()

    assert run(main())
