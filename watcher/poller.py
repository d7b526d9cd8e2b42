"""The poller: admits jobs as input arrives, asks about each when it is due, routes what it learns.

One loop takes the most overdue job from the `Schedule`, waits for the ShowAsyncTtsJob rate
limit, and starts one short task for its request (at most `max_in_flight` at once). Every answer,
whether from that single GET or from a list sweep (`sweeper.py`), goes through `observe`:

    WAITING / PROCESSING  -> polled again one cadence after it was read; while list sweeps carry
                             the polling, a job they can see gets no single GETs at all
    SUCCEED               -> the download pool (`Finished`); from the list without an audio link:
                             a single GET first, for the links
    FAILED, unknown state -> the manifest (FAILED / ERROR), with the API's code and message
    transient error       -> polled again after a jittered backoff; too many in a row: ERROR
    429                   -> everyone pauses (Retry-After if given), the pace halves and recovers
    401 / auth error      -> everyone pauses 1 s; `auth_failures` in a row across the run are
                             raised and stop the run (unfinished jobs are not written)
    deadline passed       -> TIMEOUT

The loop ends when the input is exhausted and no admitted job is left unfinished, or when `stop`
is set (SIGINT/SIGTERM): then nothing more is admitted or asked, requests under way are dropped
(their jobs stay unwritten, for the next run), and both output streams close.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from watcher.api import JobStatus, MetaStudioClient
from watcher.config import PollPolicy
from watcher.download import Finished
from watcher.errors import ApiError, AuthError, InputError, ThrottledError, TransportError
from watcher.inputs import Job
from watcher.manifest import ErrorInfo, JobResult
from watcher.ratelimit import RateLimiter
from watcher.schedule import Schedule, Watched, next_poll

log = structlog.get_logger("watcher.poller")


@dataclass(slots=True)
class PollStats:
    """Counts for the run's summary."""

    admitted: int = 0
    duplicates: int = 0
    invalid: int = 0
    requests: int = 0
    list_requests: int = 0
    throttled: int = 0
    errors: int = 0
    retries: int = 0
    sightings: int = 0
    handed_off: int = 0
    gap_total: float = 0.0
    gaps: int = 0

    @property
    def effective_cadence(self) -> float | None:
        """Mean seconds between two readings of the same pending job (None before any)."""
        return self.gap_total / self.gaps if self.gaps else None


class Poller:
    """Watches every admitted job until it is final; see the module docstring for the routes."""

    def __init__(
        self,
        client: MetaStudioClient,
        limiter: RateLimiter,
        policy: PollPolicy,
        downloads: MemoryObjectSendStream[Finished],
        results: MemoryObjectSendStream[JobResult],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._limiter = limiter
        self._policy = policy
        self._downloads = downloads
        self._results = results
        self.clock = clock
        self.wall_clock = wall_clock
        self._schedule = Schedule()
        self._seen: set[str] = set()
        self.pending: dict[str, Watched] = {}
        self._input_done = False
        self._wake = anyio.Event()
        self._in_flight = anyio.Semaphore(policy.max_in_flight)
        self._rng = rng or random.Random()
        self._auth_failures = 0
        self.sweeping = False
        self._listable = 0  # pending jobs sweeps can see, kept as a count: asked on every admission
        self._sweeps_wanted = anyio.Event()
        self.stats = PollStats()

    def stages(self) -> tuple[int, int, int]:
        """Pending jobs by what was last read of them: (WAITING, PROCESSING, not yet read)."""
        waiting = processing = unseen = 0
        for w in self.pending.values():
            if w.state == "PROCESSING":
                processing += 1
            elif w.state is None:
                unseen += 1
            else:
                waiting += 1
        return waiting, processing, unseen

    def list_mode(self) -> bool:
        """Whether list sweeps should carry the polling now (with hysteresis for `auto`)."""
        strategy = self._policy.strategy
        if strategy == "single":
            return False
        listable = self._listable
        if strategy == "list":
            return listable > 0
        capacity = self._policy.rate * self._policy.cadence
        return listable > (capacity / 2 if self.sweeping else capacity)

    @property
    def input_done(self) -> bool:
        """Whether the input is exhausted (every job has been admitted)."""
        return self._input_done

    @property
    def done(self) -> bool:
        """Whether the input is exhausted and every admitted job is final."""
        return self._input_done and not self.pending

    async def run(
        self,
        inputs: AsyncIterator[Job | InputError],
        stop: anyio.Event | None = None,
        helpers: tuple[Callable[[], Coroutine[Any, Any, None]], ...] = (),
    ) -> None:
        """Watch every job `inputs` yields until each is final, or until `stop` is set.

        `helpers` (e.g. a sweeper's `run`) run beside the loop and are cancelled when it ends.
        Closes both output streams when it returns.
        """
        async with self._downloads, self._results, anyio.create_task_group() as outer:
            if stop is not None:
                outer.start_soon(self._stop_on, stop, outer.cancel_scope)
            for helper in helpers:
                outer.start_soon(helper)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._admit, inputs)
                await self._loop(tg)
            outer.cancel_scope.cancel()  # every poll is done; helpers have nothing left to do

    @staticmethod
    async def _stop_on(stop: anyio.Event, scope: anyio.CancelScope) -> None:
        await stop.wait()
        scope.cancel()

    def _notify(self) -> None:
        self._wake.set()

    def _push(self, w: Watched, due: float) -> None:
        """(Re)schedule `w` and wake the loop, which may be sleeping towards a later time.

        `due` infinite keeps only the job's deadline, if it has one, in the schedule.
        """
        if due == math.inf and w.deadline is None:
            w.ticket += 1  # retire whatever entry it had
            return
        self._schedule.push(w, due)
        self._notify()

    def set_sweeping(self, on: bool) -> None:
        """Start or stop leaving listable jobs to sweeps; stopping gives them single GETs again."""
        if self.sweeping and not on:
            now = self.clock()
            for w in self.pending.values():
                self._push(w, now)
        elif on and not self.sweeping:
            self._sweeps_wanted.set()  # a sweeper waiting for work starts at once
        self.sweeping = on

    async def sweeps_wanted(self) -> None:
        """Wait until the poller wants list sweeps."""
        await self._sweeps_wanted.wait()
        self._sweeps_wanted = anyio.Event()

    def poll_singly(self, w: Watched) -> None:
        """Sweeps cannot see `w` (or lack its links): give it single GETs from now on."""
        self._unlist(w)
        self._push(w, self.clock())

    def _unlist(self, w: Watched) -> None:
        if w.listable:
            w.listable = False
            self._listable -= 1

    async def _admit(self, inputs: AsyncIterator[Job | InputError]) -> None:
        async for item in inputs:
            if isinstance(item, InputError):
                self.stats.invalid += 1
                log.warning(
                    "bad input line", source=item.source, line=item.line, reason=item.reason
                )
                error = ErrorInfo("INVALID_INPUT", str(item))
                await self._results.send(
                    JobResult(None, "INVALID", error=error, source=item.source, line=item.line)
                )
                continue
            if item.job_id in self._seen:
                self.stats.duplicates += 1
                log.info("duplicate job id skipped", job_id=item.job_id, line=item.line)
                continue
            self._seen.add(item.job_id)
            now = self.clock()
            timeout = self._policy.job_timeout
            w = Watched(item, admitted=now, deadline=None if timeout is None else now + timeout)
            self.pending[w.job_id] = w
            self._listable += 1
            if self.list_mode():  # the next sweep reads it; only its deadline needs an entry
                self.set_sweeping(True)
                self._push(w, math.inf)
            else:
                self._push(w, now)
            self.stats.admitted += 1
            self._notify()
        self._input_done = True
        self._notify()

    async def _loop(self, tg: TaskGroup) -> None:
        while not self.done:
            now = self.clock()
            w = self._schedule.pop_due(now)
            if w is None:
                due = self._schedule.next_due()
                self._wake = anyio.Event()
                with anyio.move_on_after(math.inf if due is None else due - now):
                    await self._wake.wait()
                continue
            if w.deadline is not None and now >= w.deadline:
                last = f"not final after {self._policy.job_timeout:g} s; last state {w.state}"
                await self.conclude(w, "TIMEOUT", ErrorInfo("TIMEOUT", last))
                continue
            if self.sweeping and w.listable:  # sweeps read it; keep only its deadline
                self._push(w, math.inf)
                continue
            await self._in_flight.acquire()
            await self._limiter.acquire()
            tg.start_soon(self._poll, w)

    async def _poll(self, w: Watched) -> None:
        try:
            await self._ask(w)
        finally:
            self._in_flight.release()

    async def _ask(self, w: Watched) -> None:
        sent = self.clock()
        self.stats.requests += 1
        self._count_reading(w, sent)
        try:
            status = await self._client.show_job(w.job_id)
        except AuthError as exc:
            self.refused(exc)
            self._push(w, self.clock() + max(self._policy.auth_pause, self._policy.cadence))
        except ThrottledError as exc:
            pause = self.throttled(self._limiter, exc)
            self._push(w, self.clock() + pause)
        except (ApiError, TransportError) as exc:
            await self._failed_request(w, exc)
        else:
            self.succeeded(self._limiter)
            w.errors = 0
            await self.observe(w, status, sent, listed=False)
            if not w.final:
                self._push(w, next_poll(sent, self._policy.cadence))

    async def show(self, job_id: str) -> JobStatus:
        """One ShowAsyncTtsJob outside the schedule (fresh links for a download), under the same
        limit and bookkeeping as polls: a refusal counts towards the run's stop and is otherwise
        a transient fault; a 429 slows everyone down."""
        await self._limiter.acquire()
        try:
            status = await self._client.show_job(job_id)
        except AuthError as exc:
            self.refused(exc)  # raises once refusals come `auth_failures` in a row
            raise TransportError(f"credentials refused once: {exc}") from exc
        except ThrottledError as exc:
            self.throttled(self._limiter, exc)
            raise
        self.succeeded(self._limiter)
        return status

    def succeeded(self, limiter: RateLimiter) -> None:
        """An API request was answered: refusals are no longer in a row; the pace recovers."""
        self._auth_failures = 0
        limiter.succeeded()

    def throttled(self, limiter: RateLimiter, exc: ThrottledError) -> float:
        """A 429: slow `limiter` down; return the pause taken."""
        self.stats.throttled += 1
        pause = exc.retry_after if exc.retry_after is not None else self._policy.throttle_pause
        limiter.throttled(pause)
        log.warning("throttled", pause_s=pause, request_id=exc.request_id)
        return pause

    def refused(self, exc: AuthError) -> None:
        """Count a refusal; raise it once `auth_failures` came in a row, else pause everyone."""
        self._auth_failures += 1
        if self._auth_failures >= self._policy.auth_failures:
            raise exc
        log.warning("credentials refused, pausing", error=str(exc))
        self._limiter.pause(self._policy.auth_pause)

    async def _failed_request(self, w: Watched, exc: ApiError | TransportError) -> None:
        self.stats.errors += 1
        w.errors += 1
        if exc.transient and w.errors < self._policy.retry.attempts:
            self.stats.retries += 1
            delay = max(self._policy.cadence, self._policy.retry.delay(w.errors, self._rng))
            log.info("poll failed, will retry", job_id=w.job_id, error=str(exc), retry_in_s=delay)
            self._push(w, self.clock() + delay)
            return
        if isinstance(exc, ApiError):
            error = ErrorInfo(exc.code, exc.message, exc.request_id)
        else:
            error = ErrorInfo("TRANSPORT", str(exc))
        await self.conclude(w, "ERROR", error)

    async def observe(self, w: Watched, status: JobStatus, at: float, *, listed: bool) -> None:
        """Take in one reading of a job's status, read at `at`, and route it."""
        if w.final:
            return
        if listed:
            self.stats.sightings += 1
            self._count_reading(w, at)
        if w.last_seen is not None and at > w.last_seen:
            self.stats.gap_total += at - w.last_seen
            self.stats.gaps += 1
        w.last_seen = at
        w.state = status.state
        if not status.final:
            return
        if status.failed:
            # The list gives only `fail_msg`, no code: such lines say FAILED. Asking each failed
            # job for its code cost 45 s of makespan for 500 failures at 10 requests/s.
            code = status.code or "FAILED"
            error = ErrorInfo(code, status.message or "the job failed", status.request_id)
            await self.conclude(w, "FAILED", error)
        elif status.state == "SUCCEED" and listed and "audio" not in status.links:
            self.poll_singly(w)  # the list gave no audio link: ask the job itself for it
        elif status.state == "SUCCEED":
            log.info("job succeeded", job_id=w.job_id, polls=w.polls)
            finished = Finished(w, status, self.clock(), self.wall_clock())
            self.stats.handed_off += 1
            await self._hand_off(w, self._downloads.send(finished))
        else:
            message = f"the API reported state {status.state!r}"
            await self.conclude(w, "ERROR", ErrorInfo("UNKNOWN_STATE", message, status.request_id))

    def _count_reading(self, w: Watched, at: float) -> None:
        """One more request for (or list sighting of) `w`, made at `at`."""
        w.polls += 1
        if w.first_poll is None:
            w.first_poll, w.first_poll_at = at, self.wall_clock()

    async def _hand_off(self, w: Watched, send: Awaitable[None]) -> None:
        """Mark `w` final, await its hand-off downstream, and only then stop counting it as
        pending: the loop (and with it any sweep still sending) ends only after every send."""
        w.final = True
        try:
            await send
        finally:
            self.pending.pop(w.job_id, None)
            self._unlist(w)
            self._notify()

    async def conclude(self, w: Watched, status: str, error: ErrorInfo) -> None:
        """Write a final line for a job that will not be downloaded."""
        log.info("job final", job_id=w.job_id, status=status, code=error.code, polls=w.polls)
        result = w.result(status, now=self.clock(), now_at=self.wall_clock(), error=error)
        await self._hand_off(w, self._results.send(result))
