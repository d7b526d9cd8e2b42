"""The shared request budget: at most `rate` requests a second, evenly spaced, never in a burst.

The gateway counts requests per one-second window; spacing them `1/rate` apart keeps every window
under the limit however the callers bunch up. Each caller reserves the next free slot when it
calls, so callers are served in the order they asked (FIFO, nobody starves).

When the gateway still says 429, `throttled()` pauses everyone and halves the pace; each answer
that was not throttled (`succeeded()`) gives back 1/20 of the configured rate, so the pace
recovers over about 20 requests and never exceeds the configured rate (AIMD, as TCP does).

`headroom` < 1 paces below the configured rate: requests sent evenly still arrive unevenly, and a
gateway that counts any one-second window then sees the odd extra one (the benchmarks measured a
429 every few seconds when pacing at exactly the gateway's limit, none at 90 % of it).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from types import TracebackType

import anyio

HEADROOM = 0.9  # the share of a gateway's limit to pace at (see the module docstring)


class RateLimiter:
    """`async with limiter:` (or `await limiter.acquire()`) waits for this caller's slot."""

    __slots__ = ("_clock", "_max_rate", "_next", "_rate", "_sleep", "granted")

    RECOVERY_STEPS = 20
    FLOOR_FRACTION = 1 / 64

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        headroom: float = 1.0,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], not {headroom}")
        self._max_rate = rate * headroom
        self._rate = self._max_rate
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")
        self.granted = 0

    @property
    def rate(self) -> float:
        """The current pace in requests per second (at most the configured rate)."""
        return self._rate

    def next_free_in(self) -> float:
        """Seconds until a request could go without waiting (0: one may go now)."""
        return max(0.0, self._next - self._clock())

    def reserve(self) -> float:
        """Take the next free slot; return how long to wait for it (0 when it is now)."""
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + 1.0 / self._rate
        self.granted += 1
        return slot - now

    async def acquire(self) -> None:
        """Wait until this caller may send one request."""
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)

    def pause(self, seconds: float) -> None:
        """Nobody sends for `seconds` from now, then the even pace resumes."""
        self._next = max(self._next, self._clock() + seconds)

    def throttled(self, pause: float) -> None:
        """The gateway answered 429: pause everyone for `pause` seconds and halve the pace."""
        self._rate = max(self._max_rate * self.FLOOR_FRACTION, self._rate / 2)
        self.pause(pause)

    def succeeded(self) -> None:
        """A request was not throttled: recover one step towards the configured rate."""
        if self._rate < self._max_rate:
            self._rate = min(self._max_rate, self._rate + self._max_rate / self.RECOVERY_STEPS)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __repr__(self) -> str:
        wait = self.next_free_in()
        return (
            f"<RateLimiter rate={self._rate:g}/{self._max_rate:g}/s granted={self.granted} "
            f"next_free_in={wait:.3f}s>"
        )
