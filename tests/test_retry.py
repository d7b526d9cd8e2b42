"""Backoff with full jitter."""

from __future__ import annotations

import random

import pytest

from watcher._retry import Retrying, RetryPolicy


def test_delays_stay_under_a_doubling_ceiling_capped() -> None:
    """Each delay is in [0, min(cap, base * 2**(n-1))] and the ceiling stops at the cap."""
    policy = RetryPolicy(attempts=10, base=0.5, cap=4.0)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0), (500, 4.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter uses the whole range, not a fixed step


def test_same_seed_same_delays() -> None:
    """Delays are reproducible with a seeded generator (tests and soak runs rely on it)."""
    policy = RetryPolicy()
    a = [policy.delay(n, random.Random(7)) for n in range(1, 6)]
    b = [policy.delay(n, random.Random(7)) for n in range(1, 6)]
    assert a == b


def test_nonsense_policies_are_refused() -> None:
    """Zero attempts or a cap below the base is a ValueError at construction."""
    with pytest.raises(ValueError, match="retry policy"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="retry policy"):
        RetryPolicy(base=2.0, cap=1.0)


def test_backoff_gives_up_after_the_policys_tries_and_honours_floor_and_hint() -> None:
    """`backoff` is None from the `attempts`-th failure on; below that, at least floor and hint."""
    policy = RetryPolicy(attempts=3, base=1.0, cap=1.0)
    rng = random.Random(3)
    assert policy.backoff(3, rng) is None
    assert policy.backoff(4, rng) is None
    assert policy.backoff(2, rng, floor=3.0) == 3.0
    assert policy.backoff(1, rng, hint=7.5) == 7.5
    assert 0.0 <= (policy.backoff(1, rng) or -1.0) <= 1.0


@pytest.mark.anyio
async def test_retrying_waits_between_tries_and_stops_at_the_last() -> None:
    """`Retrying.wait` sleeps attempts-1 times, then says give up without sleeping again."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    retrying = Retrying(RetryPolicy(attempts=4, base=2.0, cap=2.0), random.Random(5), sleep)
    outcomes = [await retrying.wait(hint=0.5) for _ in range(5)]
    assert outcomes == [True, True, True, False, False]
    assert len(slept) == 3
    assert all(0.5 <= s <= 2.0 for s in slept)
    retrying.succeeded()
    assert retrying.failed() is not None  # a success starts the count again
