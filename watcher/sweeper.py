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
"""

from __future__ import annotations

import contextlib
import random

import anyio
import structlog

from watcher.api import JobPage
from watcher.config import PollPolicy
from watcher.errors import ApiError, AuthError, TransportError
from watcher.gate import ApiGate, Deferred, ListUnavailable
from watcher.poller import Poller

log = structlog.get_logger("watcher.sweeper")
PAGE = 100
MISSES_BEFORE_SINGLE = 2
MAX_PAGES = 2000
MAX_DEFERRALS = 100  # pauses (429s, refusals, an outage) one page may wait out in one sweep
FAILED_SWEEPS = 2  # sweeps in a row cut short by transient faults before the list is given up
SLACK = 1.0  # seconds: creation times come in whole seconds


class Sweeper:
    """Runs list sweeps beside a Poller, as the module docstring describes."""

    def __init__(self, gate: ApiGate, poller: Poller, policy: PollPolicy) -> None:
        self._gate = gate
        self._poller = poller
        self._policy = policy
        self._rng = random.Random()
        self._failed_sweeps = 0
        self.retries = 0  # list pages asked again after a fault of the list itself

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
        """Read every page of the window once; True when the sweep was complete. When the list
        call turns out unusable, sweeps stop (the poller polls every job singly)."""
        try:
            return await self._sweep()
        except ListUnavailable:
            self._poller.review_sweeps()
            return False

    async def _sweep(self) -> bool:
        poller = self._poller
        since, until = self.window()
        began = poller.clock()
        seen: set[str] = set()
        offset = 0
        while True:
            page = await self._page(offset, since, until)
            if page is None:
                return False
            at = poller.clock()
            for listed in page.jobs:
                w = poller.pending.get(listed.job_id)
                if w is None:
                    continue
                seen.add(listed.job_id)
                if listed.create_time is not None:
                    w.create_time = listed.create_time
                w.sweeps_missed = 0
                if listed.status is None:  # its row cannot be read: ask the job itself
                    poller.poll_singly(w)
                else:
                    await poller.observe(w, listed.status, at, listed=True)
            offset += PAGE
            if not page.jobs or offset >= page.count:
                break
            if offset >= MAX_PAGES * PAGE:  # a count no list of ours can have: stop somewhere
                log.info("list sweep stopped after the page limit", pages=MAX_PAGES)
                break
        self._failed_sweeps = 0
        for w in list(poller.pending.values()):
            if w.listable and w.job_id not in seen and w.admitted < began:
                w.sweeps_missed += 1
                if w.sweeps_missed >= MISSES_BEFORE_SINGLE:
                    log.debug("not in the list; polling it singly", job_id=w.job_id)
                    poller.poll_singly(w)
        return True
