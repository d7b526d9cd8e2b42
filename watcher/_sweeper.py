"""The sweeper: list sweeps read up to 100 jobs' states per request with the ShowTtsJob list call.

With thousands of jobs, one GET per job per cadence cannot fit in a 10 requests/s budget; one
list page covers 100 jobs. A sweep reads every page of async jobs created within a window that
covers the pending jobs, once per cadence, on the list call's own rate limit, and hands each
pending job it finds (in the pending registry, `pending.py`) to `Poller.observe`. While sweeps
run, jobs they can see get no single GETs; single GETs are left for what the list does not show.

- `--poll single`: no sweeps. `--poll list`: sweeps whenever jobs are pending. `--poll auto`:
  sweeps while more jobs are pending than single GETs can serve at the cadence (rate x cadence),
  and stops again below half that. `Sweeper.review` is the one place that decides it.
- The list call is an optimisation, never a dependency: when it fails in a way a retry will not
  fix (the gate's ListUnavailable: a 4xx other than 429, an answer that is not a page), or
  `FAILED_SWEEPS` sweeps in a row are cut short by transient faults, sweeps stop and every
  pending job is due for a single GET at once. The list is tried again later (one page, when
  the gate says: after 5 minutes, then doubling up to an hour) and sweeps resume if it works.
- A row whose state cannot be read leaves that job to single GETs; an unreadable creation
  time is unknown.
- Window: from the earliest pending job's creation time (known once a sweep has seen it; before
  that, its admission time minus `list_lookback`) to the latest one's, open-ended while any
  pending job's creation time is unknown. Jobs created outside it (a file of old ids, say) are
  missed by the list; after two complete sweeps that should have shown them, they are left to
  single GETs and no longer widen the window.
- A page answered 429 or with a transient fault is asked again (after the pause or a jittered
  backoff), so a sweep goes on where it was rather than starting over at page 0; a sweep that
  still cannot get a page is cut short.
- Paging shifts as new jobs are created (newest first): a job pushed past a page boundary is
  read twice or, at worst, missed by one sweep, never lost: its single GET comes due if sweeps
  keep missing it.

Which pages each sweep reads is `_sweep_plan.py`'s pure `plan` (see its docstring).
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

import anyio
import structlog

from watcher._config import PollPolicy
from watcher._errors import ApiError, AuthError, TransportError
from watcher._gate import ApiGate, Deferred, ListUnavailable
from watcher._parse import JobPage, JobStatus
from watcher._pending import Pending
from watcher._retry import Retrying
from watcher._schedule import Watched
from watcher._sweep_plan import (
    FAILED_SWEEPS,
    MAX_DEFERRALS,
    MAX_PAGES,
    MISSES_BEFORE_SINGLE,
    PAGE,
    SLACK,
    ChangeRate,
    Seat,
    plan,
)

log = structlog.get_logger("watcher.sweeper")


class Reader(Protocol):
    """What a sweeper needs of the poller it feeds: the run's clocks, a place for what it
    reads, single GETs for what it cannot carry, and its list-mode decision."""

    clock: Callable[[], float]
    wall_clock: Callable[[], datetime]

    async def observe(self, w: Watched, status: JobStatus, at: float, *, listed: bool) -> None:
        """Take in one reading of `w`."""

    def poll_singly(self, w: Watched) -> None:
        """Single GETs for `w` from now on."""

    def poll_once(self, w: Watched) -> None:
        """One single GET for `w` now."""

    def carry_by_sweeps(self, on: bool) -> None:
        """Whether sweeps carry the jobs they can see (False: every job due at once)."""


class Sweeper:
    """Runs list sweeps beside a Poller over `pending`, as the module docstring describes, and
    decides whether they carry the polling (`review`). `rng` jitters the list's retries and
    `sleep` waits out their backoff and the pauses between sweeps (injectable for tests)."""

    def __init__(
        self,
        gate: ApiGate,
        pending: Pending,
        poller: Reader,
        policy: PollPolicy,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._gate = gate
        self._pending = pending
        self._poller = poller
        self._policy = policy
        self._rng = rng or random.Random()
        self._sleep = sleep
        self.sweeping = False
        self._wanted = anyio.Event()
        self._failed_sweeps = 0
        self.retries = 0  # list pages asked again after a fault of the list itself
        # the window's newest end that positions refer to (None: no complete sweep yet)
        self._until: float | None = None
        self._positions: dict[str, int] = {}  # job id -> index (newest first) in that window
        self._quiet: dict[str, float] = {}  # job id -> when its page was last seen to change
        self._stale = True  # positions may have shifted: the next sweep reads every page
        self.budget = max(1, int(policy.rate * policy.headroom * policy.cadence))
        self._rate = ChangeRate(policy.max_gap)
        pending.on_listable(self.review)

    def wants(self) -> bool:
        """Whether list sweeps should carry the polling now, if the list call works (with
        hysteresis for `auto`)."""
        strategy = self._policy.strategy
        if strategy == "single":
            return False
        listable = self._pending.listable
        if strategy == "list":
            return listable > 0
        capacity = self._policy.rate * self._policy.cadence
        return listable > (capacity / 2 if self.sweeping else capacity)

    def review(self) -> None:
        """Decide whether sweeps carry the polling: the one place that decides it, asked when
        the number of listable jobs or the list call's usability changes. Turning them on wakes
        `run` at once; turning them off makes every pending job due for a single GET."""
        on = self.wants() and self._gate.list_usable
        if on == self.sweeping:
            return
        if on:
            self._wanted.set()
        self.sweeping = on
        self._poller.carry_by_sweeps(on)

    async def _sweeps_wanted(self) -> None:
        await self._wanted.wait()
        self._wanted = anyio.Event()

    def window(self) -> tuple[float | None, float | None]:
        """The creation-time range (epoch seconds) that covers every listable pending job."""
        wall_now = self._poller.wall_clock().timestamp()
        mono_now = self._poller.clock()
        earliest: float | None = None
        latest: float | None = None
        unknown = False
        for w in self._pending:
            if not w.listable:
                continue
            if w.create_time is None:
                unknown = True
                start = wall_now - (mono_now - w.admitted) - self._policy.list_lookback
            else:
                start = w.create_time
                latest = start if latest is None else max(latest, start)
            earliest = start if earliest is None else min(earliest, start)
        since = None if earliest is None else earliest - SLACK
        until = None if unknown or latest is None else latest + SLACK
        return since, until

    async def run(self) -> None:
        """Sweep once per cadence while sweeps are on (the first at once when they turn on);
        while the list call is unusable, try it again when the gate says. Runs until
        cancelled."""
        clock = self._poller.clock
        while True:
            started = clock()
            if self.sweeping:
                await self.sweep()
                await self._sleep(max(0.0, started + self._policy.cadence - clock()))
                continue
            retry_in = self._gate.list_retry_in()
            if retry_in == 0 and self.wants():
                with contextlib.suppress(ListUnavailable):  # it is still unusable: wait again
                    await self._try_list()
                continue
            # usable but not wanted, or due for a try nobody wants yet: look again in a cadence
            wait = retry_in or self._policy.cadence
            with anyio.move_on_after(wait):
                await self._sweeps_wanted()

    async def _try_list(self) -> None:
        """One small page to see whether the unusable list call works again."""
        since, until = self.window()
        try:
            await self._gate.page(offset=0, limit=1, since=since, until=until)
        except (ListUnavailable, AuthError):
            raise
        except (Deferred, ApiError, TransportError) as exc:
            self._gate.list_failed(str(exc))
            return
        self._failed_sweeps = 0
        self.review()

    async def _page(self, offset: int, since: float | None, until: float | None) -> JobPage | None:
        """One page, asked again after a 429 or a transient fault (a sweep that gave up would
        start over at page 0 next time, and the oldest pages would starve); None: give up,
        with no wait after the last try. Only faults of the list itself count towards giving
        the list up (FAILED_SWEEPS cut short in a row: ListUnavailable); waiting out a pause or
        an outage does not."""
        retrying = Retrying(self._policy.retry, self._rng, self._sleep)
        deferrals = 0
        while True:
            try:
                return await self._gate.page(offset=offset, limit=PAGE, since=since, until=until)
            except Deferred as deferred:  # throttled, refused, or the API down: not the list's
                deferrals += 1
                if deferrals >= MAX_DEFERRALS:
                    log.info("list sweep cut short: the API keeps deferring", offset=offset)
                    return None
                await self._sleep(deferred.delay)
            except AuthError:
                raise  # refused too often: the run stops
            except (ApiError, TransportError) as exc:
                if not exc.transient:
                    raise self._gate.list_failed(str(exc)) from exc
                delay = retrying.failed()
                if delay is None:
                    break
                self.retries += 1
                log.info("list page failed, will retry", error=str(exc), offset=offset)
                await self._sleep(delay)
        self._failed_sweeps += 1
        log.info("list sweep cut short after retries", offset=offset, in_a_row=self._failed_sweeps)
        if self._failed_sweeps >= FAILED_SWEEPS:
            raise self._gate.list_failed(f"{self._failed_sweeps} sweeps in a row cut short")
        return None

    async def sweep(self) -> bool:
        """Read the pages due (every page when positions are unknown, see the module
        docstring) once; True when that was complete. When the list call turns out unusable,
        sweeps stop (the poller polls every job singly)."""
        try:
            return await self._sweep()
        except ListUnavailable:
            self.review()
            return False

    def _must_read_all(self, until: float | None, listable: list[Watched]) -> bool:
        if self._stale or until is None or self._until is None or until > self._until:
            return True
        return any(w.job_id not in self._positions for w in listable)

    async def _sweep(self) -> bool:
        poller, pending = self._poller, self._pending
        since, until = self.window()
        listable = [w for w in pending if w.listable and not w.final]
        if self._must_read_all(until, listable):
            return await self._sweep_all(since, until)
        now = poller.clock()
        seats = [
            Seat(
                w.job_id, self._positions[w.job_id], w.state, w.last_seen, self._quiet.get(w.job_id)
            )
            for w in listable
        ]
        chosen = plan(
            seats,
            now,
            cadence=self._policy.cadence,
            max_gap=self._policy.max_gap,
            budget=self.budget,
            change_rate=self._rate.per_page(now, len({seat.page for seat in seats})),
        )
        for job_id in chosen.singles:
            if (w := pending.get(job_id)) is not None:
                poller.poll_once(w)
        expected: dict[int, set[str]] = {}
        for w in listable:
            expected.setdefault(self._positions[w.job_id] // PAGE, set()).add(w.job_id)
        for number in chosen.pages:
            offset = number * PAGE
            page = await self._page(offset, since, self._until)
            if page is None:
                return False
            await self._take(page, offset, expected.get(number, set()))
        self._failed_sweeps = 0
        return True

    async def _sweep_all(self, since: float | None, until: float | None) -> bool:
        """Every page of the window, learning where each pending job is: the newest page first
        (for the count), then the oldest first (the front of the queue is there), and, once a
        cadence, the pages already read that hold PROCESSING jobs again, while they take at
        most half a sweep's budget (so a first sweep of 200 pages does not leave the front
        unread for 22 s)."""
        poller, pending = self._poller, self._pending
        began = poller.clock()
        self._stale = True  # until this sweep is complete
        self._positions = {}
        self._quiet = {j: t for j, t in self._quiet.items() if pending.get(j) is not None}
        seen: set[str] = set()
        newer: list[float | None] = []  # every row's creation time, for an open-ended window
        page = await self._page(0, since, until)
        if page is None:
            return False
        seen |= await self._take(page, 0, None)
        newer += [listed.create_time for listed in page.jobs]
        pages = min(MAX_PAGES, math.ceil(page.count / PAGE)) if page.jobs else 0
        if page.count > MAX_PAGES * PAGE:  # a count no list of ours can have: stop somewhere
            log.info("list sweep stopped after the page limit", pages=MAX_PAGES)
        refreshed = poller.clock()
        for number in range(pages - 1, 0, -1):
            page = await self._page(number * PAGE, since, until)
            if page is None:
                return False
            seen |= await self._take(page, number * PAGE, None)
            newer += [listed.create_time for listed in page.jobs]
            if poller.clock() - refreshed >= self._policy.cadence:
                refreshed = poller.clock()
                if not await self._refresh_processing(since, until):
                    return False
        self._failed_sweeps = 0
        self._until, self._stale = until, False
        if until is None:
            self._bound(newer)
        for w in pending:
            missed = w.listable and w.job_id not in seen and w.admitted < began
            if missed and pending.missed(w) >= MISSES_BEFORE_SINGLE:
                log.debug("not in the list; polling it singly", job_id=w.job_id)
                poller.poll_singly(w)
        return True

    async def _refresh_processing(self, since: float | None, until: float | None) -> bool:
        """Read again the pages placed so far that hold PROCESSING jobs or the front of the
        queue (as many of the oldest WAITING jobs as are PROCESSING, at least a page's worth),
        if they are few (at most half a sweep's budget); False when a page could not be had."""
        pending = self._pending
        placed = [
            (position, w)
            for job_id, position in self._positions.items()
            if (w := pending.get(job_id)) is not None and not w.final
        ]
        busy = [p for p, w in placed if w.state == "PROCESSING"]
        waiting = sorted((p for p, w in placed if w.state == "WAITING"), reverse=True)
        front = waiting[: max(PAGE, len(busy))]
        hot = sorted({p // PAGE for p in busy + front})
        if len(hot) > self.budget // 2:
            return True
        for number in hot:
            page = await self._page(number * PAGE, since, until)
            if page is None:
                return False
            await self._take(page, number * PAGE, None)
        return True

    def _bound(self, rows: list[float | None]) -> None:
        """After a sweep of an open-ended window (`rows`: every row's creation time, newest
        first): hold the window's newest end at the latest pending job's now that creation
        times are known, counting positions from there (the rows created after it came first),
        so the next sweep need not read every page again. A row of unknown creation time
        leaves the window open (the next sweep reads every page). If the count is off, a job
        will not be where its page had it, and that sweep marks the positions stale."""
        until = self.window()[1]
        if until is None or any(t is None for t in rows):
            return
        ahead = sum(1 for t in rows if t is not None and t > until)
        self._positions = {j: p - ahead for j, p in self._positions.items() if p >= ahead}
        self._until = until

    async def _take(self, page: JobPage, offset: int, expected: set[str] | None) -> set[str]:
        """Hand the pending jobs of `page` (read at `offset`) to the poller and note where they
        are and whether anything there changed; `expected`: the jobs that page should show
        (a partial sweep), any of them missing or moved marks the positions stale. The ids
        of the pending jobs it showed."""
        poller, pending = self._poller, self._pending
        at = poller.clock()
        seen: set[str] = set()
        changes = 0
        for index, listed in enumerate(page.jobs):
            w = pending.get(listed.job_id)
            if w is None:
                continue
            seen.add(listed.job_id)
            position = offset + index
            if expected is not None and self._positions.get(listed.job_id) != position:
                self._stale = True  # the window shifted under us
            self._positions[listed.job_id] = position
            pending.sighted(w, listed.create_time)
            if listed.status is None:  # its row cannot be read: ask the job itself
                poller.poll_singly(w)
                continue
            changes += w.state is not None and w.state != listed.status.state
            await poller.observe(w, listed.status, at, listed=True)
        if expected is not None and not expected <= seen:
            self._stale = True
        self._rate.add(at, changes)
        for job_id in seen:
            if changes or job_id not in self._quiet:
                self._quiet[job_id] = at
        return seen
