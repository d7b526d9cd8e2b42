"""The poller: asks about each pending job when it is due, and carries out what it learns.

One loop takes the most overdue job from the `Schedule` (jobs arrive from `admission.py`
through the pending registry, `pending.py`), waits for its turn at the API gate (`gate.py`: the
rate limit, pauses, outages), and starts one short task for its request (at most
`max_in_flight` at once). Every answer, whether from that single GET or from a list sweep
(`_sweeper.py`, which decides whether sweeps carry the polling), goes through `observe`, and
`routing.py` says what it means:

    PENDING    -> polled again one cadence after it was read; while list sweeps carry the
                  polling, a job they can see gets no single GETs at all
    DOWNLOAD   -> the download pool (`Finished`, a frozen snapshot of the job)
    ASK_LINKS  -> a single GET first, for the links
    FAILED     -> the manifest, with the API's code and message
    ASK_CODE   -> one single GET for the code, sent only when a request slot is spare (nobody
                  waiting for one), or FAILED as the code when none was spare within CODE_WAIT
                  seconds
    UNKNOWN    -> ERROR UNKNOWN_STATE

and of the single GETs themselves:

    transient error       -> polled again after a jittered backoff (`RetryPolicy.backoff`, the
                             cadence its floor); too many in a row: ERROR
    not the job's fault   -> (throttled, refused, the API down for everyone: the gate's
                             `Deferred`) asked again when the gate says, charging nothing
    deadline passed       -> TIMEOUT

The loop ends when the input is exhausted and no admitted job is left unfinished, or when `stop`
is set (SIGINT/SIGTERM): then nothing more is admitted or asked, requests under way are dropped
(their jobs stay unwritten, for the next run), and both output streams close.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from watcher._config import PollPolicy
from watcher._download import Finished
from watcher._errors import ApiError, AuthError, TransportError
from watcher._gate import ApiGate, Deferred
from watcher._manifest import ErrorInfo, JobResult
from watcher._parse import JobStatus, cut
from watcher._pending import Pending, PollStats
from watcher._routing import Route, failure, route, unknown_state
from watcher._schedule import Schedule, Watched, next_poll

log = structlog.get_logger("watcher.poller")
CODE_WAIT = 60.0  # seconds a list-seen FAILED job may wait for a spare slot to ask its code


class Poller:
    """Watches every pending job until it is final; see the module docstring for the routes."""

    def __init__(
        self,
        gate: ApiGate,
        policy: PollPolicy,
        pending: Pending,
        downloads: MemoryObjectSendStream[Finished],
        results: MemoryObjectSendStream[JobResult],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self._gate = gate
        self._policy = policy
        self._pending = pending
        self._downloads = downloads
        self._results = results
        self.clock = clock
        self.wall_clock = wall_clock
        self._schedule = Schedule()
        self._in_flight = anyio.Semaphore(policy.max_in_flight)
        self._rng = rng or random.Random()
        self._sweeping = False  # the sweeper's decision (`carry_by_sweeps`)
        # FAILED jobs seen in the list, waiting for a spare slot to ask their code: (job, the
        # list's status, when to give up and write code FAILED)
        self._codes: deque[tuple[Watched, JobStatus, float]] = deque()
        self._fetching = 0  # code GETs under way
        self._tail_until = math.inf  # once only code lookups are left: when to stop waiting
        self._once: set[str] = set()  # listable jobs a sweep left to one single GET

    @property
    def stats(self) -> PollStats:
        """The run's counts (the pending registry's)."""
        return self._pending.stats

    @property
    def sweeping(self) -> bool:
        """Whether list sweeps carry the polling of the jobs they can see."""
        return self._sweeping

    async def run(
        self,
        stop: anyio.Event | None = None,
        helpers: tuple[Callable[[], Coroutine[Any, Any, None]], ...] = (),
    ) -> None:
        """Watch every pending job until each is final and the input is exhausted, or until
        `stop` is set.

        `helpers` (the admission's and a sweeper's `run`) run beside the loop and are cancelled
        when it ends. Closes both output streams when it returns.
        """
        async with self._downloads, self._results, anyio.create_task_group() as outer:
            if stop is not None:
                outer.start_soon(self._stop_on, stop, outer.cancel_scope)
            for helper in helpers:
                outer.start_soon(helper)
            async with anyio.create_task_group() as tg:
                await self._loop(tg)
            outer.cancel_scope.cancel()  # every poll is done; helpers have nothing left to do
        self._log_gaps()

    def _log_gaps(self) -> None:
        """The achieved cadence, for PROCESSING jobs and for everyone, and the longest gap."""
        stats = self.stats
        if not stats.gaps:
            return
        processing = stats.processing_cadence
        log.info(
            "polling achieved",
            processing_cadence_s=None if processing is None else round(processing, 2),
            cadence_s=round(stats.gap_total / stats.gaps, 2),
            max_gap_s=round(stats.max_gap, 1),
        )

    @staticmethod
    async def _stop_on(stop: anyio.Event, scope: anyio.CancelScope) -> None:
        await stop.wait()
        scope.cancel()

    def _push(self, w: Watched, due: float) -> None:
        """(Re)schedule `w` and wake the loop, which may be sleeping towards a later time.

        `due` infinite keeps only the job's deadline, if it has one, in the schedule.
        """
        if due == math.inf and w.deadline is None:
            w.ticket += 1  # retire whatever entry it had
            return
        self._schedule.push(w, due)
        self._pending.notify()

    def carry_by_sweeps(self, on: bool) -> None:
        """The sweeper's decision: leave listable jobs to sweeps (`on`) or not; stopping makes
        every pending job due at once (single GETs from now on, at the rate limit)."""
        if self._sweeping and not on:
            now = self.clock()
            for w in self._pending:
                self._push(w, now)
        self._sweeping = on

    def poll_singly(self, w: Watched) -> None:
        """Sweeps cannot see `w` (or lack its links): give it single GETs from now on."""
        self._pending.unlist(w)
        self._push(w, self.clock())

    def poll_once(self, w: Watched) -> None:
        """One single GET for `w` now, while sweeps go on carrying it (a sweep found the GET
        cheaper than its page)."""
        if w.final or w.job_id in self._once:
            return
        self._once.add(w.job_id)
        self._push(w, self.clock())

    def _schedule_arrivals(self) -> None:
        """Newly admitted jobs are due from their admission, or, while sweeping, are left to the
        next sweep (only their deadline needs an entry)."""
        for w in self._pending.arrivals():
            self._push(w, math.inf if self._sweeping and w.listable else w.admitted)

    async def _loop(self, tg: TaskGroup) -> None:
        pending = self._pending
        while True:
            self._schedule_arrivals()
            if pending.done:
                return
            now = self.clock()
            w = self._schedule.pop_due(now)
            if w is None:
                self._note_tail(now)
                give_up = min(self._codes[0][2], self._tail_until) if self._codes else math.inf
                if self._codes and (self._gate.spare() or now >= give_up):
                    await self._ask_code(tg, now)
                    continue
                due = self._schedule.next_due()
                wake = math.inf if due is None else due
                if self._codes:  # look again when a slot frees up, or give up on the code
                    soon = now + max(self._gate.next_free_in(), 0.05)
                    wake = min(wake, soon, give_up)
                await pending.changed(wake - now)
                continue
            if w.deadline is not None and now >= w.deadline:
                last = f"not final after {self._policy.job_timeout:g} s; last state {w.state}"
                await self.conclude(w, "TIMEOUT", ErrorInfo("TIMEOUT", last))
                continue
            if self._sweeping and w.listable and w.job_id not in self._once:
                # sweeps read it; keep only its deadline
                self._push(w, math.inf)
                continue
            await self._in_flight.acquire()
            await self._gate.turn()
            tg.start_soon(self._poll, w)

    async def _poll(self, w: Watched) -> None:
        try:
            await self._ask(w)
        finally:
            self._in_flight.release()

    async def _ask(self, w: Watched) -> None:
        self._once.discard(w.job_id)
        self._pending.counted(w, self.clock())
        try:
            reading = await self._gate.show(w.job_id, turn_taken=True)
        except Deferred as deferred:  # not the job's fault: ask again, charge nothing
            self._push(w, self.clock() + deferred.delay)
        except AuthError:
            raise  # refused too often: the run stops
        except (ApiError, TransportError) as exc:
            await self._failed_request(w, exc)
        else:
            w.errors = 0
            await self.observe(w, reading.status, reading.sent, listed=False)
            if not w.final:
                self._push(w, next_poll(reading.sent, self._policy.cadence))

    def _note_tail(self, now: float) -> None:
        """Once the input is done and nothing is pending but code lookups, they get one more
        cadence, not CODE_WAIT: a batch whose failures all come at its end (scenario B: 500 at
        once) would otherwise run ~50 s longer at 10 requests/s just to name error codes."""
        only_codes = len(self._pending) <= len(self._codes) + self._fetching
        input_done = self._pending.input_done
        if self._tail_until == math.inf and input_done and self._codes and only_codes:
            self._tail_until = now + self._policy.cadence

    async def _ask_code(self, tg: TaskGroup, now: float) -> None:
        """Ask the first list-seen FAILED job for its error code, or give up on it."""
        w, listed, give_up = self._codes.popleft()
        if now >= min(give_up, self._tail_until):
            await self.conclude(w, "FAILED", failure(listed))
            return
        await self._in_flight.acquire()
        self._fetching += 1
        tg.start_soon(self._fetch_code, w, listed)

    async def _fetch_code(self, w: Watched, listed: JobStatus) -> None:
        status = listed
        try:
            reading = await self._gate.show(w.job_id)
        except AuthError:
            raise
        except (Deferred, ApiError, TransportError) as exc:
            log.debug("no error code for a failed job", job_id=w.job_id, error=str(exc))
        else:
            if reading.status.failed and reading.status.code:
                status = reading.status
        finally:
            self._in_flight.release()
            self._fetching -= 1
        await self.conclude(w, "FAILED", failure(status, listed.message))

    async def _failed_request(self, w: Watched, exc: ApiError | TransportError) -> None:
        self.stats.errors += 1
        w.errors += 1
        retry = self._policy.retry
        # no delay drawn for a fault a retry will not fix
        delay = (
            retry.backoff(w.errors, self._rng, floor=self._policy.cadence)
            if exc.transient
            else None
        )
        if delay is not None:
            self.stats.retries += 1
            reason = cut(str(exc))
            log.debug("poll failed, will retry", job_id=w.job_id, error=reason, retry_in_s=delay)
            self._push(w, self.clock() + delay)
            return
        if isinstance(exc, ApiError):
            error = ErrorInfo(exc.code, exc.message, exc.request_id)
        else:
            error = ErrorInfo("TRANSPORT", cut(str(exc)))
        await self.conclude(w, "ERROR", error)

    async def observe(self, w: Watched, status: JobStatus, at: float, *, listed: bool) -> None:
        """Take in one reading of a job's status, read at `at`, and carry out its route."""
        if w.final:
            return
        if listed:
            self._pending.counted(w, at, sighting=True)
        self._pending.read(w, status.state, at)
        match route(status, listed=listed):
            case Route.PENDING:
                return
            case Route.ASK_CODE:
                # From spare budget only (asking at once cost 45 s of makespan for 500
                # failures at 10 requests/s).
                w.final = True  # nothing else reads or polls it meanwhile
                w.ticket += 1  # retire its schedule entries (its deadline too: it is final)
                self._pending.unlist(w)
                self._codes.append((w, status, self.clock() + CODE_WAIT))
                self._pending.notify()
            case Route.FAILED:
                await self.conclude(w, "FAILED", failure(status))
            case Route.ASK_LINKS:
                self.poll_singly(w)
            case Route.DOWNLOAD:
                log.debug("job succeeded on the API", job_id=w.job_id, polls=w.polls)
                finished = Finished(w.snapshot(self.clock(), self.wall_clock()), status)
                self.stats.handed_off += 1
                await self._hand_off(w, self._downloads.send(finished))
            case Route.UNKNOWN:
                await self.conclude(w, "ERROR", unknown_state(status))

    async def _hand_off(self, w: Watched, send: Awaitable[None]) -> None:
        """Mark `w` final, await its hand-off downstream, and only then stop counting it as
        pending: the loop (and with it any sweep still sending) ends only after every send."""
        w.final = True
        try:
            await send
        finally:
            self._pending.remove(w)

    async def conclude(self, w: Watched, status: str, error: ErrorInfo) -> None:
        """Write a final line for a job that will not be downloaded."""
        # FAILED is the API's answer (the manifest has it: debug); ERROR and TIMEOUT are ours and
        # worth a look (warning), with the reason.
        emit = log.debug if status == "FAILED" else log.warning
        emit(
            "job final",
            job_id=w.job_id,
            status=status,
            code=error.code,
            reason=error.message,
            polls=w.polls,
        )
        result = JobResult.of(w.snapshot(self.clock(), self.wall_clock()), status, error=error)
        await self._hand_off(w, self._results.send(result))
