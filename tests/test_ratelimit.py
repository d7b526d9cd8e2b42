"""The shared request budget, on a fake clock."""

from __future__ import annotations

from itertools import pairwise

import pytest
from helpers import FakeClock

from watcher._ratelimit import RateLimiter


@pytest.mark.anyio
async def test_requests_are_spaced_evenly() -> None:
    """Ten acquisitions at rate 5/s are spaced 0.2 s apart, the first at once."""
    clock = FakeClock()
    limiter = RateLimiter(5, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(10):
        async with limiter:
            times.append(clock.now)
    gaps = [round(b - a, 9) for a, b in pairwise(times)]
    assert times[0] == 1000.0
    assert gaps == [0.2] * 9


@pytest.mark.anyio
async def test_no_window_of_one_second_exceeds_the_rate() -> None:
    """However callers bunch up, any half-open one-second window holds at most `rate` grants."""
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    times = []
    for i in range(100):
        if i % 17 == 0:
            clock.now += 3.0  # idle periods must not bank a burst
        await limiter.acquire()
        times.append(clock.now)
    for t in times:  # 1 ns of slack: float sums of 0.1 land a hair either side of t + 1.0
        assert sum(1 for u in times if t <= u < t + 1.0 - 1e-9) <= 10


def test_reservations_are_first_come_first_served() -> None:
    """Concurrent callers get slots in the order they asked."""
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock, sleep=clock.sleep)
    assert [limiter.reserve() for _ in range(4)] == [0.0, 0.5, 1.0, 1.5]
    assert limiter.granted == 4


def test_pause_holds_everyone_then_resumes_pace() -> None:
    """After pause(2), the next slot is 2 s away and the following ones keep the even pace."""
    clock = FakeClock()
    limiter = RateLimiter(4, clock=clock, sleep=clock.sleep)
    limiter.reserve()
    limiter.pause(2.0)
    assert limiter.reserve() == 2.0
    assert limiter.reserve() == 2.25
    assert "rate=4/4/s" in repr(limiter)


def test_throttling_halves_the_pace_and_successes_restore_it_gradually() -> None:
    """A 429 halves the rate (floored); 20 successes bring it back, never above the maximum."""
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    limiter.throttled(pause=3.0)
    assert limiter.rate == 5.0
    assert limiter.reserve() == 3.0
    assert limiter.reserve() == pytest.approx(3.2)  # the halved pace: 0.2 s apart
    for _ in range(50):
        limiter.throttled(pause=0.0)
    assert limiter.rate == 10 / 64
    rates = []
    for _ in range(25):
        limiter.succeeded()
        rates.append(limiter.rate)
    assert rates == sorted(rates)
    assert rates[-1] == 10.0
    assert rates[0] < 1.0


def test_rate_must_be_positive() -> None:
    """A zero rate is refused at construction, not discovered as a hang."""
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0)


def test_headroom_paces_below_the_configured_rate() -> None:
    """headroom=0.9 at rate 10 spaces requests 1/9 s apart; nonsense headroom is refused."""
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep, headroom=0.9)
    assert [round(limiter.reserve(), 6) for _ in range(3)] == [
        0.0,
        round(1 / 9, 6),
        round(2 / 9, 6),
    ]
    with pytest.raises(ValueError, match="headroom"):
        RateLimiter(10, headroom=1.5)
