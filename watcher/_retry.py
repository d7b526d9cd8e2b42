"""How long to wait before trying again: exponential backoff with full jitter (`RetryPolicy`),
the one loop helper every retrying operation uses (`Retrying`), and what a server's Retry-After
header asks for (`parse_retry_after`, for the API and storage alike).

`delay = uniform(0, min(cap, base * 2 ** (attempt - 1)))`: the ceiling doubles with each attempt,
and drawing uniformly below it spreads many clients' retries apart instead of bunching them (see
"Exponential Backoff And Jitter", AWS Architecture Blog). Polls add the cadence as a floor.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import anyio


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

    def backoff(
        self, failures: int, rng: random.Random, *, hint: float | None = None, floor: float = 0.0
    ) -> float | None:
        """Seconds to wait after `failures` failed tries in a row (1-based) before the next: the
        jittered delay, raised to `floor` and to `hint` (what the server asked for, e.g. its
        Retry-After). None once `attempts` tries have failed: give up."""
        if failures >= self.attempts:
            return None
        return max(self.delay(failures, rng), floor, hint or 0.0)


@dataclass(slots=True)
class Retrying:
    """One operation's tries under a `RetryPolicy`, as a plain loop:

        retrying = Retrying(policy, rng)
        while True:
            try:
                return await operation()
            except SomethingTransient as exc:
                if not await retrying.wait(hint=exc.retry_after):
                    raise  # the policy's tries are used up

    `failed()` counts a try without waiting, for callers that schedule the next try themselves.
    `sleep` is injectable so tests run on a fake clock."""

    policy: RetryPolicy
    rng: random.Random
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    failures: int = 0

    def failed(self, *, hint: float | None = None, floor: float = 0.0) -> float | None:
        """Count one failed try: the seconds to wait before the next, or None to give up."""
        self.failures += 1
        return self.policy.backoff(self.failures, self.rng, hint=hint, floor=floor)

    async def wait(self, *, hint: float | None = None, floor: float = 0.0) -> bool:
        """Count one failed try and wait out its delay; False (no wait) to give up."""
        delay = self.failed(hint=hint, floor=floor)
        if delay is None:
            return False
        if delay > 0:
            await self.sleep(delay)
        return True

    def succeeded(self) -> None:
        """The operation worked: the next failure starts from the first backoff again."""
        self.failures = 0


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """A Retry-After header as seconds from `now`: delta-seconds (ASCII digits only) or an
    HTTP-date (a past date is 0). None for anything else. Huge values come back as they are
    (math.inf past 12 digits): the caller caps every pause."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value) if len(value) <= 12 else math.inf
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
