"""The shared request budget: at most `rate` requests a second, evenly spaced, never in a burst.

The gateway counts requests per one-second window; spacing them `1/rate` apart keeps every window
under the limit however the callers bunch up. Each caller reserves the next free slot when it
calls, so callers are served in the order they asked (FIFO, nobody starves). A 429 pauses
everyone: `pause()` pushes the next free slot out.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from types import TracebackType

import anyio


class RateLimiter:
    """`async with limiter:` (or `await limiter.acquire()`) waits for this caller's slot."""

    __slots__ = ("_clock", "_interval", "_next", "_sleep", "granted")

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")
        self.granted = 0

    @property
    def rate(self) -> float:
        """Requests per second."""
        return 1.0 / self._interval

    def reserve(self) -> float:
        """Take the next free slot; return how long to wait for it (0 when it is now)."""
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + self._interval
        self.granted += 1
        return slot - now

    async def acquire(self) -> None:
        """Wait until this caller may send one request."""
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)

    def pause(self, seconds: float) -> None:
        """Nobody sends for `seconds` from now (after a 429), then the even pace resumes."""
        self._next = max(self._next, self._clock() + seconds)

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
        wait = max(0.0, self._next - self._clock())
        return f"<RateLimiter rate={self.rate:g}/s granted={self.granted} next_free_in={wait:.3f}s>"
