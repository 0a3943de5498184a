"""The shared backoff: growth, cap, jitter bounds, reset after a stable run, refusal of nonsense settings."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.backoff import Backoff


def test_doubles_up_to_the_cap_then_stays():
    b = Backoff(initial_s=0.5, max_s=4.0)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_stable_run_resets_and_a_short_one_does_not():
    b = Backoff(initial_s=1.0, max_s=60.0, stable_after_s=30.0)
    b.next_delay(), b.next_delay()
    b.succeeded_after(5.0)
    assert b.next_delay() == 4.0
    b.succeeded_after(30.0)
    assert b.next_delay() == 1.0


@given(
    initial=st.floats(0.001, 10),
    cap_factor=st.floats(1, 100),
    jitter=st.floats(0, 1),
    draws=st.lists(st.floats(0, 0.999999), min_size=1, max_size=80),
)
def test_jittered_delays_stay_within_their_band_and_never_exceed_the_cap(initial, cap_factor, jitter, draws):
    it = iter(draws)
    b = Backoff(initial_s=initial, max_s=initial * cap_factor, jitter=jitter, rand=lambda: next(it))
    for _ in draws:
        ceiling = b.ceiling_s
        d = b.next_delay()
        assert ceiling * (1 - jitter) - 1e-12 <= d <= ceiling <= b.max_s


@pytest.mark.parametrize(
    "kwargs", [{"initial_s": 0}, {"initial_s": 5, "max_s": 1}, {"factor": 0.5}, {"jitter": 1.5}, {"jitter": -0.1}]
)
def test_nonsense_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(**kwargs)
