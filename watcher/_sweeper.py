"""List sweeps: read up to 100 jobs' states per request with the ShowTtsJob list call.

With thousands of jobs, one GET per job per cadence cannot fit in a 10 requests/s budget; one
list page covers 100 jobs. A sweep reads every page of async jobs created within a window that
covers the pending jobs, once per cadence, on the list call's own rate limit, and hands each
pending job it finds to `Poller.observe`. While sweeps run, jobs they can see get no single GETs;
single GETs are left for what the list does not show.

- `--poll single`: no sweeps. `--poll list`: sweeps whenever jobs are pending. `--poll auto`:
  sweeps while more jobs are pending than single GETs can serve at the cadence (rate x cadence),
  and stops again below half that. `Poller.review_sweeps` is the one place that decides it.
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

Which pages a sweep reads (`plan`): the first sweep, and any sweep after the window could have
shifted (a pending job of unknown position or creation time, a later `until`, a job not where
its page had it), reads every page. In between, with the window's newest end held fixed (so a
page's offset keeps its jobs; the window narrowing at its old end takes pages off the bottom
only), each sweep reads only the pages that are due:

- a page holding a PROCESSING job, a job not read yet, or one of the oldest WAITING jobs (as
  many as are PROCESSING, at least a page's worth: the front of the queue, about to start) is
  *hot*: due every cadence;
- any other page is due again after twice as long as it has been seen unchanged (a state
  change there resets that to one cadence), at most `max_gap` minus a cadence, but only once
  its quiet means something: at the rate states change across the window (per page, over the
  last `max_gap` seconds, `ChangeRate`), it would have seen SIGNIFICANT changes by now. Before
  that (and while nothing changes anywhere) it is due every cadence. So pages where states
  change are read at the cadence, quiet ones down to the floor, and every pending job is read
  at least every `max_gap` seconds (a page at that floor goes first after the front);
- a sweep reads at most a cadence's worth of pages at the rate (`rate x headroom x cadence`):
  hot pages first while they take at most half of that, then the floor (the longest unread
  first), then the most overdue (age over interval). When changes are spread over the whole
  window (jobs of mixed priority, a service that does not work in creation order), every page
  is hot or keeps changing, the reservation lapses and the most overdue page goes first: the
  uniform sweep of before, round robin;
- a due page with only one pending job of ours is read with one single GET of that job
  instead (the other API's budget, and it brings a SUCCEED job's links along).
"""

from __future__ import annotations

import contextlib
import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import anyio
import structlog

from watcher._api import JobPage
from watcher._config import PollPolicy
from watcher._errors import ApiError, AuthError, TransportError
from watcher._gate import ApiGate, Deferred, ListUnavailable
from watcher._poller import Poller
from watcher._schedule import Watched

log = structlog.get_logger("watcher.sweeper")
PAGE = 100
MISSES_BEFORE_SINGLE = 2
MAX_PAGES = 2000
MAX_DEFERRALS = 100  # pauses (429s, refusals, an outage) one page may wait out in one sweep
FAILED_SWEEPS = 2  # sweeps in a row cut short by transient faults before the list is given up
SLACK = 1.0  # seconds: creation times come in whole seconds
SIGNIFICANT = 20.0  # changes a page would have seen at the window's rate before its quiet counts


class ChangeRate:
    """How often job states change in the window: changes seen per page and second, over the
    last `span` seconds (the pages of the window given by the caller)."""

    __slots__ = ("_first", "_seen", "_span")

    def __init__(self, span: float) -> None:
        self._span = span
        self._seen: deque[tuple[float, int]] = deque()
        self._first: float | None = None

    def add(self, at: float, changes: int) -> None:
        """`changes` state changes seen by a reading at `at`."""
        if self._first is None:
            self._first = at
        if changes:
            self._seen.append((at, changes))

    def per_page(self, now: float, pages: int) -> float:
        """Changes per page and second lately (0 before any reading)."""
        while self._seen and self._seen[0][0] < now - self._span:
            self._seen.popleft()
        if self._first is None or pages <= 0:
            return 0.0
        span = min(self._span, now - self._first)
        if span <= 0:
            return 0.0
        return sum(n for _, n in self._seen) / (span * pages)


@dataclass(frozen=True, slots=True)
class Seat:
    """What a plan knows of one pending job: where the list showed it (`position`: its index,
    newest first, in the fixed window), its last state and when it was read (monotonic), and
    when its page was last seen to change (or first read; None: never read by a sweep)."""

    job_id: str
    position: int
    state: str | None
    last_seen: float | None
    quiet_since: float | None

    @property
    def page(self) -> int:
        """The page (offset / PAGE) that shows it."""
        return self.position // PAGE


@dataclass(frozen=True, slots=True)
class Plan:
    """One sweep's reading: pages (offset / PAGE) in the order to read them, the most urgent
    first, and jobs to read with one single GET each instead of their page."""

    pages: tuple[int, ...]
    singles: tuple[str, ...]


def plan(
    seats: Iterable[Seat],
    now: float,
    *,
    cadence: float,
    max_gap: float,
    budget: int,
    change_rate: float,
) -> Plan:
    """Which pages to read at `now`: the module docstring's rules, as a pure function.
    `change_rate`: changes per page and second across the window lately (`ChangeRate`).

    `budget`: pages one sweep may read. The floor goes first after the front, so a page can
    slip past `max_gap` only when more pages reach it at once than a sweep may read (more than
    `budget x max_gap / cadence` pages in all: no sweeper at this rate could hold the floor).
    """
    by_page: dict[int, list[Seat]] = {}
    waiting: list[Seat] = []
    processing = 0
    for seat in seats:
        by_page.setdefault(seat.page, []).append(seat)
        if seat.state == "WAITING":
            waiting.append(seat)
        elif seat.state == "PROCESSING":
            processing += 1
    waiting.sort(key=lambda seat: -seat.position)  # the oldest first: the front of the queue
    front = {seat.job_id for seat in waiting[: max(PAGE, processing)]}
    cap = max(cadence, max_gap - cadence)
    must: list[tuple[float, int]] = []  # (urgency, page)
    hot: list[tuple[float, int]] = []
    rest: list[tuple[float, int]] = []
    for page, members in by_page.items():
        read = [m.last_seen for m in members if m.last_seen is not None]
        oldest = min(read) if len(read) == len(members) else -math.inf
        age = now - oldest
        is_hot = any(m.state != "WAITING" or m.job_id in front for m in members)
        if is_hot:
            interval = cadence
        else:
            changed = [m.quiet_since for m in members if m.quiet_since is not None]
            quiet = oldest - max(changed) if changed else 0.0
            meaningful = change_rate * quiet >= SIGNIFICANT
            interval = min(cap, max(cadence, 2 * quiet)) if meaningful else cadence
        if age + cadence >= max_gap:
            must.append((age, page))
        elif age + cadence > interval:  # left for the next sweep, it would be late
            (hot if is_hot else rest).append((age / interval, page))
    by_urgency: list[tuple[float, int]] = []
    if len(hot) <= budget // 2:  # the front fits in half a sweep: it goes every cadence
        by_urgency += sorted(hot, reverse=True)
        others = rest
    else:  # changes are everywhere: every page competes alike, a uniform sweep
        others = hot + rest
    # then the floor, the longest unread first, then the most overdue, within the budget
    by_urgency += sorted(must, reverse=True)
    by_urgency += sorted(others, reverse=True)
    by_urgency = by_urgency[:budget]
    pages: list[int] = []
    singles: list[str] = []
    for _, page in by_urgency:
        members = by_page[page]
        if len(members) == 1 and members[0].state is not None:
            singles.append(members[0].job_id)
        else:
            pages.append(page)
    # read in that order, not by page number: a page chosen last would otherwise be read
    # first in one sweep and last in another, a round plus most of a sweep apart
    return Plan(tuple(pages), tuple(singles))


class Sweeper:
    """Runs list sweeps beside a Poller, as the module docstring describes."""

    def __init__(self, gate: ApiGate, poller: Poller, policy: PollPolicy) -> None:
        self._gate = gate
        self._poller = poller
        self._policy = policy
        self._rng = random.Random()
        self._failed_sweeps = 0
        self.retries = 0  # list pages asked again after a fault of the list itself
        # the window's newest end that positions refer to (None: no complete sweep yet)
        self._until: float | None = None
        self._positions: dict[str, int] = {}  # job id -> index (newest first) in that window
        self._quiet: dict[str, float] = {}  # job id -> when its page was last seen to change
        self._stale = True  # positions may have shifted: the next sweep reads every page
        self.budget = max(1, int(policy.rate * policy.headroom * policy.cadence))
        self._rate = ChangeRate(policy.max_gap)

    def window(self) -> tuple[float | None, float | None]:
        """The creation-time range (epoch seconds) that covers every listable pending job."""
        wall_now = self._poller.wall_clock().timestamp()
        mono_now = self._poller.clock()
        earliest: float | None = None
        latest: float | None = None
        unknown = False
        for w in self._poller.pending.values():
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
        """Sweep once per cadence while the poller has sweeps on (the first at once when it
        turns them on); while the list call is unusable, try it again when the gate says.
        Runs until cancelled."""
        poller = self._poller
        while True:
            started = poller.clock()
            if poller.sweeping:
                await self.sweep()
                delay = max(0.0, started + self._policy.cadence - poller.clock())
                await anyio.sleep(delay)
                continue
            retry_in = self._gate.list_retry_in()
            if retry_in == 0 and poller.wants_sweeps():
                with contextlib.suppress(ListUnavailable):  # it is still unusable: wait again
                    await self._try_list()
                continue
            # usable but not wanted, or due for a try nobody wants yet: look again in a cadence
            wait = retry_in or self._policy.cadence
            with anyio.move_on_after(wait):
                await poller.sweeps_wanted()

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
        self._poller.review_sweeps()

    async def _page(self, offset: int, since: float | None, until: float | None) -> JobPage | None:
        """One page, asked again after a 429 or a transient fault (a sweep that gave up would
        start over at page 0 next time, and the oldest pages would starve); None: give up.
        Only faults of the list itself count towards giving the list up (FAILED_SWEEPS cut
        short in a row: ListUnavailable); waiting out a pause or an outage does not."""
        failures = deferrals = 0
        while failures < self._policy.retry.attempts:
            try:
                return await self._gate.page(offset=offset, limit=PAGE, since=since, until=until)
            except Deferred as deferred:  # throttled, refused, or the API down: not the list's
                deferrals += 1
                if deferrals >= MAX_DEFERRALS:
                    log.info("list sweep cut short: the API keeps deferring", offset=offset)
                    return None
                await anyio.sleep(deferred.delay)
            except AuthError:
                raise  # refused too often: the run stops
            except (ApiError, TransportError) as exc:
                if not exc.transient:
                    raise self._gate.list_failed(str(exc)) from exc
                failures += 1
                self.retries += 1
                log.info("list page failed, will retry", error=str(exc), offset=offset)
                await anyio.sleep(self._policy.retry.delay(failures, self._rng))
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
            self._poller.review_sweeps()
            return False

    def _must_read_all(self, until: float | None, listable: list[Watched]) -> bool:
        if self._stale or until is None or self._until is None or until > self._until:
            return True
        return any(w.job_id not in self._positions for w in listable)

    async def _sweep(self) -> bool:
        poller = self._poller
        since, until = self.window()
        listable = [w for w in poller.pending.values() if w.listable and not w.final]
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
            poller.poll_once(poller.pending[job_id])
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
        poller = self._poller
        began = poller.clock()
        self._stale = True  # until this sweep is complete
        self._positions = {}
        self._quiet = {j: t for j, t in self._quiet.items() if j in poller.pending}
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
        for w in list(poller.pending.values()):
            if w.listable and w.job_id not in seen and w.admitted < began:
                w.sweeps_missed += 1
                if w.sweeps_missed >= MISSES_BEFORE_SINGLE:
                    log.debug("not in the list; polling it singly", job_id=w.job_id)
                    poller.poll_singly(w)
        return True

    async def _refresh_processing(self, since: float | None, until: float | None) -> bool:
        """Read again the pages placed so far that hold PROCESSING jobs or the front of the
        queue (as many of the oldest WAITING jobs as are PROCESSING, at least a page's worth),
        if they are few (at most half a sweep's budget); False when a page could not be had."""
        pending = self._poller.pending
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
        poller = self._poller
        at = poller.clock()
        seen: set[str] = set()
        changes = 0
        for index, listed in enumerate(page.jobs):
            w = poller.pending.get(listed.job_id)
            if w is None:
                continue
            seen.add(listed.job_id)
            position = offset + index
            if expected is not None and self._positions.get(listed.job_id) != position:
                self._stale = True  # the window shifted under us
            self._positions[listed.job_id] = position
            if listed.create_time is not None:
                w.create_time = listed.create_time
            w.sweeps_missed = 0
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
