"""List sweeps: read up to 100 jobs' states per request with the ShowTtsJob list call.

With thousands of jobs, one GET per job per cadence cannot fit in a 10 requests/s budget; one
list page covers 100 jobs. A sweep reads every page of async jobs created within a window that
covers the pending jobs, once per cadence, on the list call's own rate limit, and hands each
pending job it finds to `Poller.observe`. While sweeps run, jobs they can see get no single GETs;
single GETs are left for what the list does not show.

- `--poll single`: no sweeps. `--poll list`: sweeps whenever jobs are pending. `--poll auto`:
  sweeps while more jobs are pending than single GETs can serve at the cadence (rate x cadence),
  and stops again below half that.
- Window: from the earliest pending job's creation time (known once a sweep has seen it; before
  that, its admission time minus `list_lookback`) to the latest one's, open-ended while any
  pending job's creation time is unknown. Jobs created outside it (a file of old ids, say) are
  missed by the list; after two complete sweeps that should have shown them, they are left to
  single GETs and no longer widen the window.
- A page answered 429 or with a transient fault is asked again (after the pause or a jittered
  backoff), so a sweep goes on where it was rather than starting over at page 0.
- Paging shifts as new jobs are created (newest first): a job pushed past a page boundary is
  read twice or, at worst, missed by one sweep, never lost: its single GET comes due if sweeps
  keep missing it.
"""

from __future__ import annotations

import random

import anyio
import structlog

from watcher.api import JobPage, MetaStudioClient
from watcher.config import PollPolicy
from watcher.errors import ApiError, AuthError, ThrottledError, TransportError
from watcher.poller import Poller
from watcher.ratelimit import RateLimiter

log = structlog.get_logger("watcher.sweeper")
PAGE = 100
MISSES_BEFORE_SINGLE = 2
SLACK = 1.0  # seconds: creation times come in whole seconds


class Sweeper:
    """Runs list sweeps beside a Poller, as the module docstring describes."""

    def __init__(
        self, client: MetaStudioClient, limiter: RateLimiter, poller: Poller, policy: PollPolicy
    ) -> None:
        self._client = client
        self._limiter = limiter
        self._poller = poller
        self._policy = policy
        self._rng = random.Random()

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
        """Sweep once per cadence while sweeps are wanted (the first at once when the poller
        starts wanting them); runs until cancelled."""
        while True:
            started = self._poller.clock()
            self._poller.set_sweeping(self._poller.list_mode())
            if self._poller.sweeping:
                await self.sweep()
                delay = max(0.0, started + self._policy.cadence - self._poller.clock())
                await anyio.sleep(delay)
            else:
                await self._poller.sweeps_wanted()

    async def _page(self, offset: int, since: float | None, until: float | None) -> JobPage | None:
        """One page, asked again after a 429 or a transient fault (a sweep that gave up would
        start over at page 0 next time, and the oldest pages would starve); None: give up."""
        poller = self._poller
        for attempt in range(1, self._policy.retry.attempts + 1):
            await self._limiter.acquire()
            poller.stats.list_requests += 1
            try:
                page = await self._client.list_jobs(
                    offset=offset, limit=PAGE, since=since, until=until
                )
            except AuthError as exc:
                poller.refused(exc)
            except ThrottledError as exc:
                poller.throttled(self._limiter, exc)
            except (ApiError, TransportError) as exc:
                if not exc.transient:
                    log.info("list sweep cut short", error=str(exc), offset=offset)
                    return None
                await anyio.sleep(self._policy.retry.delay(attempt, self._rng))
            else:
                poller.succeeded(self._limiter)
                return page
        log.info("list sweep cut short after retries", offset=offset)
        return None

    async def sweep(self) -> bool:
        """Read every page of the window once; True when the sweep was complete."""
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
                await poller.observe(w, listed.status, at, listed=True)
            offset += PAGE
            if not page.jobs or offset >= page.count:
                break
        for w in list(poller.pending.values()):
            if w.listable and w.job_id not in seen and w.admitted < began:
                w.sweeps_missed += 1
                if w.sweeps_missed >= MISSES_BEFORE_SINGLE:
                    log.info("not in the list; polling it singly", job_id=w.job_id)
                    poller.poll_singly(w)
        return True
