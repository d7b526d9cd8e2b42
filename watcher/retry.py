"""How long to wait before trying again: exponential backoff with full jitter.

`delay = uniform(0, min(cap, base * 2 ** (attempt - 1)))`: the ceiling doubles with each attempt,
and drawing uniformly below it spreads many clients' retries apart instead of bunching them (see
"Exponential Backoff And Jitter", AWS Architecture Blog). Polls add the cadence as a floor.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`attempts`: tries in a row before giving up (per job for polls, per file for downloads).
    `base`, `cap`: seconds; the backoff ceiling starts at `base` and stops growing at `cap`."""

    attempts: int = 6
    base: float = 1.0
    cap: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base <= 0 or self.cap < self.base:
            raise ValueError(f"unusable retry policy: {self}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed try number `attempt` (1-based)."""
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt - 1, 62))
        return rng.uniform(0.0, ceiling)
