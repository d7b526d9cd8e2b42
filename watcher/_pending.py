"""The pending registry: every job being watched, from its admission until it is final.

`admission.py` adds jobs and says when the input is exhausted; the poller and the sweeper read
and update them only through these methods: what a reading saw (`counted`, `read`, `sighted`,
`missed`), which jobs sweeps can see (`unlist`, with a listener for the sweeper's list-mode
decision), and `remove` once a job's final word is sent on. `stats` are the run's counts, each
field written by the one owner its comment names, read by the summary and the progress line.

The registry also carries the engine's one wake-up: whoever waits for work (the poller's loop)
waits on `changed`, and anything that gives it work (an admission, a reschedule) calls `notify`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio

from watcher._gate import ApiCounts
from watcher._schedule import Watched


@dataclass(slots=True)
class PollStats:
    """Counts for the run's summary; `api` counts every request the gate sent."""

    api: ApiCounts = field(default_factory=ApiCounts)
    admitted: int = 0  # admission
    duplicates: int = 0  # admission
    invalid: int = 0  # admission
    errors: int = 0  # poller: failed single GETs
    retries: int = 0  # poller: single GETs asked again after one
    sightings: int = 0  # the registry: list rows read of pending jobs
    handed_off: int = 0  # poller: jobs sent to the downloads
    gap_total: float = 0.0  # the registry, from here on: gaps between two readings of a job
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


class Pending:
    """The jobs being watched, by id, in admission order (see the module docstring)."""

    def __init__(
        self,
        counts: ApiCounts | None = None,
        *,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._jobs: dict[str, Watched] = {}
        self._arrived: deque[Watched] = deque()
        self._listable = 0  # jobs sweeps can see, kept as a count: asked on every admission
        self._on_listable: Callable[[], None] | None = None
        self._input_done = False
        self._changed = anyio.Event()
        self._wall_clock = wall_clock
        self.stats = PollStats() if counts is None else PollStats(api=counts)

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[Watched]:
        return iter(list(self._jobs.values()))

    def get(self, job_id: str) -> Watched | None:
        """The pending job of that id, if any."""
        return self._jobs.get(job_id)

    @property
    def input_done(self) -> bool:
        """Whether the input is exhausted (every job has been admitted)."""
        return self._input_done

    @property
    def done(self) -> bool:
        """Whether the input is exhausted and every admitted job is final."""
        return self._input_done and not self._jobs

    @property
    def listable(self) -> int:
        """How many pending jobs sweeps can see."""
        return self._listable

    def on_listable(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever the number of listable jobs changes (the sweeper's
        list-mode decision); one listener."""
        self._on_listable = listener

    # admission's half
    def add(self, w: Watched) -> None:
        """Watch `w` (a new id: admission dedupes); listable until a sweep gives it up."""
        self._jobs[w.job_id] = w
        self._arrived.append(w)
        if w.listable:
            self._listable += 1
            self._listable_changed()
        self.notify()

    def close(self) -> None:
        """The input is exhausted: nothing more will be added."""
        self._input_done = True
        self.notify()

    def arrivals(self) -> Iterator[Watched]:
        """The jobs added since the last call, oldest first (the poller schedules them)."""
        while self._arrived:
            yield self._arrived.popleft()

    # what readings saw
    def counted(self, w: Watched, at: float, *, sighting: bool = False) -> None:
        """One more request for (or, `sighting`, list row read of) `w`, made at `at`
        (monotonic)."""
        self.stats.sightings += sighting
        w.polls += 1
        if w.first_poll is None:
            w.first_poll = at
            w.first_poll_at = self._wall_clock()

    def read(self, w: Watched, state: str, at: float) -> None:
        """`w` was read in `state` at `at`: the gap since its last reading is counted."""
        stats = self.stats
        if w.last_seen is not None and at > w.last_seen:
            gap = at - w.last_seen
            stats.gap_total += gap
            stats.gaps += 1
            stats.max_gap = max(stats.max_gap, gap)
            if w.state == "PROCESSING":
                stats.processing_gap_total += gap
                stats.processing_gaps += 1
        w.last_seen = at
        w.state = state

    def sighted(self, w: Watched, create_time: float | None) -> None:
        """A list page showed `w` (created at `create_time`, epoch seconds, if readable)."""
        if create_time is not None:
            w.create_time = create_time
        w.sweeps_missed = 0

    def missed(self, w: Watched) -> int:
        """A complete sweep that should have shown `w` did not: how many in a row now."""
        w.sweeps_missed += 1
        return w.sweeps_missed

    def unlist(self, w: Watched) -> None:
        """Sweeps cannot carry `w` (any more): it is left to single GETs."""
        if w.listable:
            w.listable = False
            self._listable -= 1
            self._listable_changed()

    def remove(self, w: Watched) -> None:
        """`w`'s final word is sent on: it is no longer pending."""
        self._jobs.pop(w.job_id, None)
        self.unlist(w)
        self.notify()

    # progress
    def stages(self) -> tuple[int, int, int]:
        """Pending jobs by what was last read of them: (WAITING, PROCESSING, not yet read)."""
        waiting = processing = unseen = 0
        for w in self._jobs.values():
            if w.state == "PROCESSING":
                processing += 1
            elif w.state is None:
                unseen += 1
            else:
                waiting += 1
        return waiting, processing, unseen

    def longest_unread(self, now: float) -> float | None:
        """The longest gap between two readings of any job so far, the open gaps of pending
        jobs included (None before any reading)."""
        seen = [now - w.last_seen for w in self._jobs.values() if w.last_seen is not None]
        longest = max([self.stats.max_gap, *seen])
        return longest if longest > 0 or self.stats.gaps else None

    # the one wake-up
    def notify(self) -> None:
        """Something changed: wake whoever waits in `changed`."""
        self._changed.set()

    async def changed(self, within: float) -> None:
        """Wait until `notify`, or at most `within` seconds (math.inf: no bound but the
        caller's). One waiter at a time: the poller's loop."""
        self._changed = anyio.Event()
        with anyio.move_on_after(max(within, 0.0)):
            await self._changed.wait()

    def _listable_changed(self) -> None:
        if self._on_listable is not None:
            self._on_listable()
