"""The poller: admits jobs as input arrives, asks about each when it is due, routes what it learns.

One loop takes the most overdue job from the `Schedule`, waits for its turn at the API gate
(`gate.py`: the rate limit, pauses, outages), and starts one short task for its request (at most
`max_in_flight` at once). Every answer, whether from that single GET or from a list sweep
(`sweeper.py`), goes through `observe`:

    WAITING / PROCESSING  -> polled again one cadence after it was read; while list sweeps carry
                             the polling, a job they can see gets no single GETs at all
    SUCCEED               -> the download pool (`Finished`); from the list without an audio link:
                             a single GET first, for the links
    FAILED                -> the manifest, with the API's code and message; from the list (which
                             gives no code) after one single GET for the code, sent only when a
                             request slot is spare (nobody waiting for one), or FAILED as the code
                             when none was spare within CODE_WAIT seconds
    unknown state         -> ERROR UNKNOWN_STATE
    transient error       -> polled again after a jittered backoff; too many in a row: ERROR
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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from watcher._config import PollPolicy
from watcher._download import Finished
from watcher._errors import ApiError, AuthError, InputError, TransportError
from watcher._gate import ApiCounts, ApiGate, Deferred
from watcher._inputs import Job
from watcher._manifest import ErrorInfo, JobResult
from watcher._parse import JobStatus, cut
from watcher._schedule import Schedule, Watched, next_poll

log = structlog.get_logger("watcher.poller")
CODE_WAIT = 60.0  # seconds a list-seen FAILED job may wait for a spare slot to ask its code


@dataclass(slots=True)
class PollStats:
    """Counts for the run's summary; `api` counts every request the gate sent."""

    api: ApiCounts = field(default_factory=ApiCounts)
    admitted: int = 0
    duplicates: int = 0
    invalid: int = 0
    errors: int = 0
    retries: int = 0
    sightings: int = 0
    handed_off: int = 0
    gap_total: float = 0.0
    gaps: int = 0
    processing_gap_total: float = 0.0  # gaps between readings of a job read PROCESSING
    processing_gaps: int = 0
    max_gap: float = 0.0  # the longest any job went between two readings

    @property
    def requests(self) -> int:
        """ShowAsyncTtsJob requests (polls, fresh links, error codes)."""
        return self.api.show

    @property
    def list_requests(self) -> int:
        """ShowTtsJob requests."""
        return self.api.list

    @property
    def throttled(self) -> int:
        """Requests answered 429."""
        return self.api.throttled

    @property
    def effective_cadence(self) -> float | None:
        """Mean seconds between two readings of the same pending job (None before any)."""
        return self.gap_total / self.gaps if self.gaps else None

    @property
    def processing_cadence(self) -> float | None:
        """Mean seconds between two readings of a job that was PROCESSING (None before any)."""
        return self.processing_gap_total / self.processing_gaps if self.processing_gaps else None


class Poller:
    """Watches every admitted job until it is final; see the module docstring for the routes."""

    def __init__(
        self,
        gate: ApiGate,
        policy: PollPolicy,
        downloads: MemoryObjectSendStream[Finished],
        results: MemoryObjectSendStream[JobResult],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self._gate = gate
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
        self.sweeping = False
        self._listable = 0  # pending jobs sweeps can see, kept as a count: asked on every admission
        self._sweeps_wanted = anyio.Event()
        # FAILED jobs seen in the list, waiting for a spare slot to ask their code: (job, the
        # list's status, when to give up and write code FAILED)
        self._codes: deque[tuple[Watched, JobStatus, float]] = deque()
        self._fetching = 0  # code GETs under way
        self._tail_until = math.inf  # once only code lookups are left: when to stop waiting
        self._once: set[str] = set()  # listable jobs a sweep left to one single GET
        self.stats = PollStats(api=gate.counts)

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

    def wants_sweeps(self) -> bool:
        """Whether list sweeps should carry the polling now, if the list call works (with
        hysteresis for `auto`)."""
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

    def review_sweeps(self) -> None:
        """Decide whether sweeps carry the polling: the one place that decides it, asked when
        the number of listable jobs or the list call's usability changes."""
        self._set_sweeping(self.wants_sweeps() and self._gate.list_usable)

    def _set_sweeping(self, on: bool) -> None:
        """Start or stop leaving listable jobs to sweeps; stopping makes every pending job due
        at once (single GETs from now on, at the rate limit)."""
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

    def poll_once(self, w: Watched) -> None:
        """One single GET for `w` now, while sweeps go on carrying it (a sweep found the GET
        cheaper than its page)."""
        if w.final or w.job_id in self._once:
            return
        self._once.add(w.job_id)
        self._push(w, self.clock())

    def longest_unread(self) -> float | None:
        """The longest gap between two readings of any job so far, the open gaps of pending
        jobs included (None before any reading)."""
        now = self.clock()
        seen = [now - w.last_seen for w in self.pending.values() if w.last_seen is not None]
        longest = max([self.stats.max_gap, *seen])
        return longest if longest > 0 or self.stats.gaps else None

    def _unlist(self, w: Watched) -> None:
        if w.listable:
            w.listable = False
            self._listable -= 1
            self.review_sweeps()

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
            self.review_sweeps()
            # while sweeping, the next sweep reads it: only its deadline needs an entry
            self._push(w, math.inf if self.sweeping else now)
            self.stats.admitted += 1
            self._notify()
        self._input_done = True
        self._notify()

    async def _loop(self, tg: TaskGroup) -> None:
        while not self.done:
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
                self._wake = anyio.Event()
                with anyio.move_on_after(wake - now):
                    await self._wake.wait()
                continue
            if w.deadline is not None and now >= w.deadline:
                last = f"not final after {self._policy.job_timeout:g} s; last state {w.state}"
                await self.conclude(w, "TIMEOUT", ErrorInfo("TIMEOUT", last))
                continue
            if self.sweeping and w.listable and w.job_id not in self._once:
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
        self._count_reading(w, self.clock())
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
        only_codes = len(self.pending) <= len(self._codes) + self._fetching
        if self._tail_until == math.inf and self._input_done and self._codes and only_codes:
            self._tail_until = now + self._policy.cadence

    async def _ask_code(self, tg: TaskGroup, now: float) -> None:
        """Ask the first list-seen FAILED job for its error code, or give up on it."""
        w, listed, give_up = self._codes.popleft()
        if now >= min(give_up, self._tail_until):
            await self._conclude_failed(w, listed)
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
        await self._conclude_failed(w, status, listed.message)

    async def _conclude_failed(
        self, w: Watched, status: JobStatus, fallback: str | None = None
    ) -> None:
        message = status.message or fallback or "the job failed"
        error = ErrorInfo(status.code or "FAILED", message, status.request_id)
        await self.conclude(w, "FAILED", error)

    async def _failed_request(self, w: Watched, exc: ApiError | TransportError) -> None:
        self.stats.errors += 1
        w.errors += 1
        if exc.transient and w.errors < self._policy.retry.attempts:
            self.stats.retries += 1
            delay = max(self._policy.cadence, self._policy.retry.delay(w.errors, self._rng))
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
        """Take in one reading of a job's status, read at `at`, and route it."""
        if w.final:
            return
        if listed:
            self.stats.sightings += 1
            self._count_reading(w, at)
        if w.last_seen is not None and at > w.last_seen:
            gap = at - w.last_seen
            self.stats.gap_total += gap
            self.stats.gaps += 1
            self.stats.max_gap = max(self.stats.max_gap, gap)
            if w.state == "PROCESSING":
                self.stats.processing_gap_total += gap
                self.stats.processing_gaps += 1
        w.last_seen = at
        w.state = status.state
        if not status.final:
            return
        if status.failed and listed and not status.code:
            # The list gives only `fail_msg`, no code: ask the job itself, but only from spare
            # budget (asking at once cost 45 s of makespan for 500 failures at 10 requests/s).
            w.final = True  # nothing else reads or polls it meanwhile
            w.ticket += 1  # retire its schedule entries (its deadline too: it is final)
            self._unlist(w)
            self._codes.append((w, status, self.clock() + CODE_WAIT))
            self._notify()
        elif status.failed:
            await self._conclude_failed(w, status)
        elif status.state == "SUCCEED" and listed and "audio" not in status.links:
            self.poll_singly(w)  # the list gave no audio link: ask the job itself for it
        elif status.state == "SUCCEED":
            log.debug("job succeeded on the API", job_id=w.job_id, polls=w.polls)
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
        result = w.result(status, now=self.clock(), now_at=self.wall_clock(), error=error)
        await self._hand_off(w, self._results.send(result))
