"""Whether a service (the API, or object storage) is reachable, judged from every request to it.

One request that gets no answer (refused, reset, timed out) or a 5xx is that request's bad luck;
`threshold` of them in a row across the whole run, with no answer in between, is an outage: the
service is down for everyone, and charging each job's retry budget for it would turn a 30-second
network blip into permanent ERROR lines. So while a service is down:

- every caller waits in `wait()` before its request; one caller at a time is let through as the
  probe, at backoff times (`base`, doubling, up to `cap`, jittered);
- `failed()` returns True: the failure is the outage's, not the job's, and is not charged;
- past `timeout` seconds since it went down, `wait()` raises OutageError, which stops the run
  (jobs not final are left unwritten, so a rerun picks them up);
- any answer at all (a 4xx included: something answered) ends the outage, and everyone goes on.

Pure bookkeeping over an injected clock; it sends nothing itself.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import anyio
import structlog

from watcher._errors import OutageError

log = structlog.get_logger("watcher.outage")


class Outage:
    """The reachability of one service, shared by every task that talks to it."""

    __slots__ = (
        "_base",
        "_cap",
        "_changed",
        "_clock",
        "_down_at",
        "_failures",
        "_next_probe",
        "_probe_started",
        "_probes",
        "_rng",
        "_sleep",
        "_wall_clock",
        "service",
        "since",
        "threshold",
        "timeout",
    )

    def __init__(
        self,
        service: str,
        *,
        timeout: float | None = 900.0,
        threshold: int = 3,
        base: float = 1.0,
        cap: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if threshold < 1 or base <= 0 or cap < base:
            raise ValueError(f"unusable outage settings: {threshold=}, {base=}, {cap=}")
        self.service = service
        self.timeout = timeout
        self.threshold = threshold
        self._base, self._cap = base, cap
        self._clock, self._wall_clock, self._sleep = clock, wall_clock, sleep
        self._rng = rng or random.Random()
        self._failures = 0  # no-answer failures in a row
        self._down_at: float | None = None  # monotonic
        self.since: float | None = None  # wall clock (epoch seconds), for messages
        self._next_probe = 0.0
        self._probes = 0
        self._probe_started: float | None = None
        self._changed = anyio.Event()

    @property
    def down(self) -> bool:
        """Whether the service is considered unreachable now."""
        return self._down_at is not None

    def next_try_in(self) -> float | None:
        """Seconds until the next probe may go, while down; None while up."""
        if self._down_at is None:
            return None
        return max(0.0, self._next_probe - self._clock())

    def describe(self) -> str | None:
        """A short line for the progress display while down, e.g. "the API unreachable since
        02:13:05 UTC, next try in 8 s"; None while up."""
        wait = self.next_try_in()
        if wait is None or self.since is None:
            return None
        since = datetime.fromtimestamp(self.since, UTC).strftime("%H:%M:%S UTC")
        return f"{self.service} unreachable since {since}, next try in {wait:.0f} s"

    def failed(self) -> bool:
        """Record a request that got no usable answer (no connection, reset, timeout, 5xx).

        Returns True when the service is (now) down: the failure is not the job's to count.
        """
        self._failures += 1
        now = self._clock()
        if self._down_at is None:
            if self._failures < self.threshold:
                return False
            self._down_at, self.since = now, self._wall_clock()
            self._probes = 0
            log.warning(
                "service unreachable: pausing every request to it",
                service=self.service,
                failures_in_a_row=self._failures,
                gives_up_after_s=self.timeout,
            )
        self._probes += 1
        ceiling = min(self._cap, self._base * 2.0 ** min(self._probes - 1, 62))
        self._next_probe = now + ceiling / 2 + self._rng.uniform(0.0, ceiling / 2)
        self._probe_started = None
        self._notify()
        return True

    def answered(self) -> None:
        """Record an answer of any kind: the service is reachable."""
        self._failures = 0
        if self._down_at is not None:
            log.warning(
                "service reachable again",
                service=self.service,
                down_for_s=round(self._clock() - self._down_at, 1),
            )
            self._down_at = self.since = None
            self._probe_started = None
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def check(self) -> None:
        """Raise OutageError when the service has been down for longer than `timeout`."""
        if self._down_at is None or self.timeout is None:
            return
        if self._clock() - self._down_at >= self.timeout:
            since = datetime.fromtimestamp(self.since or 0, UTC).isoformat(timespec="seconds")
            raise OutageError(
                self.service,
                self.since or 0.0,
                f"{self.service} has been unreachable since {since} "
                f"(more than {self.timeout:g} s); jobs not final were not written, "
                "so running the same command again picks them up",
            )

    async def wait(self) -> None:
        """Return when this caller may send a request: at once while the service is up; while it
        is down, when this caller is the next probe. OutageError past `timeout`."""
        while self._down_at is not None:
            self.check()
            now = self._clock()
            # A probe that never reported (its task was cancelled) frees its turn after `cap`.
            stuck = self._probe_started is not None and now - self._probe_started > self._cap
            if now >= self._next_probe and (self._probe_started is None or stuck):
                self._probe_started = now
                return
            until = self._next_probe if self._probe_started is None else now + self._cap
            if self.timeout is not None:
                until = min(until, self._down_at + self.timeout)
            await self._sleep_or_change(max(0.0, until - now))

    async def _sleep_or_change(self, delay: float) -> None:
        """Sleep `delay` seconds, or less if the state changes meanwhile."""
        changed = self._changed
        async with anyio.create_task_group() as tg:

            async def sleeper() -> None:
                await self._sleep(delay)
                tg.cancel_scope.cancel()

            tg.start_soon(sleeper)
            await changed.wait()
            tg.cancel_scope.cancel()

    def __repr__(self) -> str:
        state = "down" if self.down else "up"
        return f"<Outage {self.service} {state} failures={self._failures} probes={self._probes}>"
