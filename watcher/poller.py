"""The poller: admits jobs as input arrives, asks about each when it is due, routes what it learns.

One loop takes the most overdue job from the `Schedule`, waits for the shared `RateLimiter`, and
starts one short task for its request (at most `max_in_flight` at once). The answer decides:

    WAITING / PROCESSING  -> back into the schedule, one cadence after this request was sent
    SUCCEED               -> the download pool (`Finished`)
    FAILED, unknown state -> the manifest (FAILED / ERROR), with the API's code and message
    transient error       -> back into the schedule after a jittered backoff; too many in a
                             row: ERROR with the last error
    429                   -> everyone pauses (Retry-After if given) and the pace halves, then
                             recovers; the job is asked again later
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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

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
    throttled: int = 0
    errors: int = 0
    retries: int = 0


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
        self._clock = clock
        self._wall_clock = wall_clock
        self._schedule = Schedule()
        self._seen: set[str] = set()
        self._unfinished = 0
        self._input_done = False
        self._wake = anyio.Event()
        self._in_flight = anyio.Semaphore(policy.max_in_flight)
        self._rng = rng or random.Random()
        self._auth_failures = 0
        self.stats = PollStats()

    @property
    def unfinished(self) -> int:
        """Jobs admitted and not yet final."""
        return self._unfinished

    async def run(
        self, inputs: AsyncIterator[Job | InputError], stop: anyio.Event | None = None
    ) -> None:
        """Watch every job `inputs` yields until each is final, or until `stop` is set.

        Closes both output streams when it returns.
        """
        async with self._downloads, self._results, anyio.create_task_group() as outer:
            if stop is not None:
                outer.start_soon(self._stop_on, stop, outer.cancel_scope)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._admit, inputs)
                await self._loop(tg)
            outer.cancel_scope.cancel()  # every poll is done; the stop watcher has nothing to do

    @staticmethod
    async def _stop_on(stop: anyio.Event, scope: anyio.CancelScope) -> None:
        await stop.wait()
        scope.cancel()

    def _notify(self) -> None:
        self._wake.set()

    async def _admit(self, inputs: AsyncIterator[Job | InputError]) -> None:
        async for item in inputs:
            if isinstance(item, InputError):
                self.stats.invalid += 1
                log.warning(
                    "bad input line", source=item.source, line=item.line, reason=item.reason
                )
                await self._results.send(
                    JobResult(
                        job_id=None,
                        status="INVALID",
                        error=ErrorInfo("INVALID_INPUT", str(item)),
                        source=item.source,
                        line=item.line,
                    )
                )
                continue
            if item.job_id in self._seen:
                self.stats.duplicates += 1
                log.info(
                    "duplicate job id skipped",
                    job_id=item.job_id,
                    source=item.source,
                    line=item.line,
                )
                continue
            self._seen.add(item.job_id)
            now = self._clock()
            timeout = self._policy.job_timeout
            watched = Watched(
                item, admitted=now, deadline=None if timeout is None else now + timeout
            )
            self._schedule.push(watched, now)
            self._unfinished += 1
            self.stats.admitted += 1
            self._notify()
        self._input_done = True
        self._notify()

    async def _loop(self, tg: TaskGroup) -> None:
        while not (self._input_done and self._unfinished == 0):
            now = self._clock()
            watched = self._schedule.pop_due(now)
            if watched is None:
                due = self._schedule.next_due()
                self._wake = anyio.Event()
                with anyio.move_on_after(math.inf if due is None else due - now):
                    await self._wake.wait()
                continue
            if watched.deadline is not None and now >= watched.deadline:
                await self._conclude(
                    watched,
                    "TIMEOUT",
                    ErrorInfo(
                        "TIMEOUT",
                        f"not final after {self._policy.job_timeout:g} s; "
                        f"last state {watched.state}",
                    ),
                )
                continue
            await self._in_flight.acquire()
            await self._limiter.acquire()
            tg.start_soon(self._poll, watched)

    async def _poll(self, watched: Watched) -> None:
        try:
            await self._ask(watched)
        finally:
            self._in_flight.release()

    async def _ask(self, w: Watched) -> None:
        sent = self._clock()
        if w.first_poll is None:
            w.first_poll, w.first_poll_at = sent, self._wall_clock()
        w.polls += 1
        self.stats.requests += 1
        try:
            status = await self._client.show_job(w.job_id)
        except AuthError as exc:
            self._refused(w, exc)
        except ThrottledError as exc:
            self.stats.throttled += 1
            pause = exc.retry_after if exc.retry_after is not None else self._policy.throttle_pause
            self._limiter.throttled(pause)
            log.warning("throttled", job_id=w.job_id, pause_s=pause, request_id=exc.request_id)
            self._reschedule(w, self._clock() + pause)
        except (ApiError, TransportError) as exc:
            await self._failed_request(w, exc)
        else:
            self._auth_failures = 0
            self._limiter.succeeded()
            w.errors = 0
            w.state = status.state
            await self._answered(w, status, sent)

    def _refused(self, w: Watched, exc: AuthError) -> None:
        """Count a refusal; raise it once `auth_failures` came in a row, else pause and retry."""
        self._auth_failures += 1
        if self._auth_failures >= self._policy.auth_failures:
            raise exc
        log.warning("credentials refused, pausing", job_id=w.job_id, error=str(exc))
        self._limiter.pause(1.0)
        self._reschedule(w, self._clock() + max(1.0, self._policy.cadence))

    async def _failed_request(self, w: Watched, exc: ApiError | TransportError) -> None:
        self.stats.errors += 1
        code = exc.code if isinstance(exc, ApiError) else "TRANSPORT"
        message = exc.message if isinstance(exc, ApiError) else str(exc)
        request_id = exc.request_id if isinstance(exc, ApiError) else None
        w.errors += 1
        if exc.transient and w.errors < self._policy.retry.attempts:
            self.stats.retries += 1
            delay = max(self._policy.cadence, self._policy.retry.delay(w.errors, self._rng))
            log.info("poll failed, will retry", job_id=w.job_id, error=str(exc), retry_in_s=delay)
            self._reschedule(w, self._clock() + delay)
            return
        await self._conclude(w, "ERROR", ErrorInfo(code, message, request_id))

    async def _answered(self, w: Watched, status: JobStatus, sent: float) -> None:
        if not status.final:
            self._reschedule(w, next_poll(sent, self._policy.cadence))
            return
        if status.failed:
            error = ErrorInfo(
                status.code or "FAILED", status.message or "the job failed", status.request_id
            )
            await self._conclude(w, "FAILED", error)
        elif status.state == "SUCCEED":
            self._unfinished -= 1
            self._notify()
            log.info("job succeeded", job_id=w.job_id, polls=w.polls)
            await self._downloads.send(Finished(w, status, self._clock(), self._wall_clock()))
        else:
            error = ErrorInfo(
                "UNKNOWN_STATE", f"the API reported state {status.state!r}", status.request_id
            )
            await self._conclude(w, "ERROR", error)

    def _reschedule(self, w: Watched, due: float) -> None:
        self._schedule.push(w, due)
        self._notify()

    async def _conclude(self, w: Watched, status: str, error: ErrorInfo) -> None:
        """Write a final line for a job that will not be downloaded."""
        self._unfinished -= 1
        self._notify()
        log.info("job final", job_id=w.job_id, status=status, code=error.code, polls=w.polls)
        await self._results.send(
            w.result(status, now=self._clock(), now_at=self._wall_clock(), error=error)
        )
