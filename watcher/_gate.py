"""The one gate to the MetaStudio API: every request of a run goes through an `ApiGate`.

It owns what requests share: the client, one rate limiter per API (ShowAsyncTtsJob, ShowTtsJob;
the gateway counts each on its own), the pause everyone is in, the count of refused requests in
a row, the API's `Outage`, and whether the list call can be used. Callers ask for "show one job"
or "list a page" and hear back one of:

    an answer             -> a `Reading` (show) or a `JobPage` (list)
    Deferred(delay)       -> nothing was wrong with the job: the request was throttled (everyone
                             pauses: Retry-After, else `throttle_pause`, never past `max_pause`),
                             refused (everyone pauses `auth_pause`), refused with something fixed
                             since (a rotated token, a corrected clock: at once), or the API is
                             down for everyone (the Outage holds callers back and probes). Ask
                             again after `delay`; charge no job's retry budget
    ApiError / TransportError -> this request's failure: the caller's job pays for it
    AuthError             -> `auth_failures` refusals in a row: the run stops (every later
                             request raises it too)
    OutageError           -> the API stayed unreachable past `outage_timeout`: the run stops
    ListUnavailable       -> the list call fails in a way a retry will not fix (a 4xx other than
                             429 and 401, an IAM 403 included; an answer that is not a page):
                             jobs are polled singly; the list is tried again after LIST_RETRY
                             (doubling, at most LIST_RETRY_MAX)

A request that gets no answer (refused or reset connection, timeout) tells the Outage, and so
does a 5xx, unless it is a repeat for the same job (one job's persistent 500 is that job's
ERROR, not an outage; 5xx across jobs are); any answer at all tells it the API is reachable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import structlog

from watcher._client import MetaStudioClient, RetryableAuth
from watcher._config import PollPolicy
from watcher._errors import ApiError, AuthError, ThrottledError, TransportError, WatcherError
from watcher._outage import Outage
from watcher._parse import AnswerError, JobPage, JobStatus, cut
from watcher._ratelimit import RateLimiter

log = structlog.get_logger("watcher.gate")
T = TypeVar("T")
LIST = "list"  # the key of list requests in the outage bookkeeping
LIST_RETRY = 300.0  # seconds after the list call stopped working before it is tried again
LIST_RETRY_MAX = 3600.0
FRESH_DEFERRALS = 20  # pauses one fresh-links request waits out before it fails
EXCUSES = 10  # refusals in a row excused as "fixed since" before they count after all


class Deferred(Exception):
    """The request was not answered for a reason that is not its job's; ask again in `delay`."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(reason)
        self.delay = delay


class ListUnavailable(WatcherError):
    """The list call cannot be used for now (the message says why); poll jobs singly."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One answer of ShowAsyncTtsJob and when (monotonic) its request was sent."""

    status: JobStatus
    sent: float


@dataclass(slots=True)
class ApiCounts:
    """Requests sent through the gate, for the run's summary."""

    show: int = 0  # every ShowAsyncTtsJob, `fresh` ones included
    fresh: int = 0
    list: int = 0
    throttled: int = 0
    refused: int = 0


class ApiGate:
    """The API as the rest of the run sees it; see the module docstring."""

    def __init__(
        self,
        client: MetaStudioClient,
        policy: PollPolicy,
        outage: Outage,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._client = client
        self._policy = policy
        self.outage = outage
        self._clock, self._sleep = clock, sleep
        self._show_limit = RateLimiter(
            policy.rate, headroom=policy.headroom, clock=clock, sleep=sleep
        )
        self._list_limit = RateLimiter(
            policy.rate, headroom=policy.headroom, clock=clock, sleep=sleep
        )
        self.counts = ApiCounts()
        self._refusals = 0  # refused requests in a row
        self._excused = 0  # refusals in a row excused as fixed since (bounded, see _refused)
        self._fatal: AuthError | None = None
        self._failing: set[str] = set()  # what got a 5xx since the last answer (jobs, "list")
        self._pause_until = -math.inf
        self.list_usable = True
        self._list_retry_at = math.inf
        self._list_backoff = LIST_RETRY
        self._list_warned = False

    # -- what callers ask for ------------------------------------------------------------

    async def turn(self) -> None:
        """Wait until a ShowAsyncTtsJob request may go (the API reachable, a slot free) and take
        that slot; the caller's next `show(..., turn_taken=True)` uses it."""
        await self.outage.wait()
        await self._show_limit.acquire()

    async def show(self, job_id: str, *, turn_taken: bool = False) -> Reading:
        """One ShowAsyncTtsJob; the outcomes are the module docstring's."""
        if not turn_taken:
            await self.turn()
        self.counts.show += 1
        sent = self._clock()
        status = await self._send(self._show_limit, job_id, lambda: self._client.show_job(job_id))
        return Reading(status, sent)

    async def fresh(self, job_id: str) -> JobStatus:
        """ShowAsyncTtsJob for a download's fresh links: like `show`, but waits out what is not
        the job's fault itself (429s, refusals short of fatal, outages), up to FRESH_DEFERRALS
        times, so a throttled refresh does not spend the file's download retries; then raises
        what deferred it."""
        last = Deferred(0.0, "no request sent")
        for _ in range(FRESH_DEFERRALS):
            self.counts.fresh += 1
            try:
                return (await self.show(job_id)).status
            except Deferred as deferred:
                last = deferred
                await self._sleep(deferred.delay)
        cause = last.__cause__
        raise cause if isinstance(cause, WatcherError) else TransportError(str(last))

    async def page(
        self, *, offset: int, limit: int, since: float | None, until: float | None
    ) -> JobPage:
        """One page of ShowTtsJob; ListUnavailable when the list call cannot be used."""
        if not self.list_usable and self._clock() < self._list_retry_at:
            raise ListUnavailable("the list call is not used for now")
        await self.outage.wait()
        await self._list_limit.acquire()
        self.counts.list += 1
        try:
            page = await self._send(
                self._list_limit,
                LIST,
                lambda: self._client.list_jobs(
                    offset=offset, limit=limit, since=since, until=until
                ),
            )
        except AnswerError as exc:
            raise self.list_failed(str(exc)) from exc
        except AuthError:
            raise  # refused too often: the run stops
        except ApiError as exc:
            if 400 <= exc.status < 500:
                raise self.list_failed(str(exc)) from exc
            raise
        if not self.list_usable:
            log.warning("the list call works again: sweeps resume")
            self.list_usable, self._list_retry_at = True, math.inf
            self._list_backoff = LIST_RETRY
        return page

    def list_failed(self, reason: str) -> ListUnavailable:
        """Stop using the list call (said once at warning level); the error to raise."""
        now = self._clock()
        if self.list_usable or now >= self._list_retry_at:
            retry_in = self._list_backoff
            if not self.list_usable:  # a retry that failed again
                self._list_backoff = min(LIST_RETRY_MAX, self._list_backoff * 2)
            self.list_usable, self._list_retry_at = False, now + retry_in
            event = "the list call cannot be used: polling every job with single GETs"
            (log.info if self._list_warned else log.warning)(
                event, reason=cut(reason), list_retry_in_s=retry_in
            )
            self._list_warned = True
        return ListUnavailable(f"the list call cannot be used: {cut(reason)}")

    def list_retry_in(self) -> float | None:
        """Seconds until the unusable list call may be tried again; None while it is usable."""
        return None if self.list_usable else max(0.0, self._list_retry_at - self._clock())

    def spare(self) -> bool:
        """Whether a ShowAsyncTtsJob slot is free right now (nobody is waiting for one, nothing
        paused, the API up): a request sent now takes no slot a poll was waiting for."""
        return not self.outage.down and self._show_limit.next_free_in() == 0

    def next_free_in(self) -> float:
        """Seconds until a ShowAsyncTtsJob slot is free."""
        return self._show_limit.next_free_in()

    def pause_left(self) -> float | None:
        """Seconds left of the pause everyone is in; None when there is none."""
        left = self._pause_until - self._clock()
        return left if left > 0 else None

    # -- bookkeeping -----------------------------------------------------------------------

    async def _send(self, limiter: RateLimiter, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """Send `call` (for `key`: a job id, or "list") and book its outcome."""
        if self._fatal is not None:
            raise self._fatal
        try:
            answer = await call()
        except AuthError as exc:
            self._answered()
            if key == LIST and exc.status != 401:
                # a 403 for the list alone: the account lacks that permission, its credentials
                # are fine (single GETs work); not a refusal that could stop the run
                raise self.list_failed(str(exc)) from exc
            raise self._refused(exc) from exc
        except ThrottledError as exc:
            self._answered()
            raise Deferred(self._throttled(limiter, exc), str(exc)) from exc
        except AnswerError:
            self._answered()
            raise
        except ApiError as exc:
            if exc.status < 500:
                self._answered()
            elif (self.outage.down or key not in self._failing) and self._no_answer(key):
                raise Deferred(0.0, str(exc)) from exc
            raise
        except TransportError as exc:
            if self._no_answer(key):
                raise Deferred(0.0, str(exc)) from exc
            raise
        self._answered()
        self._refusals = self._excused = 0
        limiter.succeeded()
        return answer

    def _answered(self) -> None:
        self._failing.clear()
        self.outage.answered()

    def _no_answer(self, key: str) -> bool:
        """A request for `key` got no usable answer; True when the API is down for everyone."""
        self._failing.add(key)
        return self.outage.failed()

    def _pause(self, seconds: float) -> None:
        for limiter in (self._show_limit, self._list_limit):
            limiter.pause(seconds)
        self._pause_until = max(self._pause_until, self._clock() + seconds)

    def _throttled(self, limiter: RateLimiter, exc: ThrottledError) -> float:
        """A 429: slow that API down and pause it; the pause taken, never past `max_pause`."""
        self.counts.throttled += 1
        asked = exc.retry_after if exc.retry_after is not None else self._policy.throttle_pause
        pause = min(asked, self._policy.max_pause)
        if asked > pause:
            log.warning(
                "throttled; the server asked for a longer pause than --max-pause",
                asked_s=asked if math.isfinite(asked) else "huge",
                pause_s=pause,
                request_id=exc.request_id,
            )
        else:
            log.warning("throttled", pause_s=pause, request_id=exc.request_id)
        limiter.throttled(pause)
        self._pause_until = max(self._pause_until, self._clock() + pause)
        return pause

    def _refused(self, exc: AuthError) -> BaseException:
        """A refusal: what to raise. Excused (fixed since) at most EXCUSES times in a row, so a
        server that always seems to have moved its clock still stops the run."""
        self.counts.refused += 1
        if isinstance(exc, RetryableAuth) and self._excused < EXCUSES:
            self._excused += 1
            log.warning("credentials refused; asking again at once", reason=exc.message)
            return Deferred(0.0, str(exc))
        self._refusals += 1
        if self._refusals >= self._policy.auth_failures:
            self._fatal = AuthError(exc.status, exc.code, exc.message, exc.request_id)
            return self._fatal
        log.warning("credentials refused, pausing", error=str(exc))
        self._pause(self._policy.auth_pause)
        return Deferred(self._policy.auth_pause, str(exc))
