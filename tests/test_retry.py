"""Backoff with full jitter."""

from __future__ import annotations

import random

import pytest

from watcher._retry import RetryPolicy


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
