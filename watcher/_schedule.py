"""Who is polled when: one heap of due times for every watched job, and the record of each.

Costs O(log n) per poll and one small record per job, not a sleeping task per job. The job that has
been due the longest goes first (ties: the one admitted first), so when the shared budget is short
every job's wait grows alike and nobody starves. Pure data; the clock is the caller's. The
record (`Watched`) is the pending registry's (`pending.py`); what leaves the poller is its
frozen `snapshot`.

Each job has at most one live entry: pushing a job again retires the entry it had, which
`pop_due` then skips, so rescheduling never leaves a stale poll behind.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime
from itertools import count

from watcher._inputs import Job
from watcher._manifest import JobSnapshot


@dataclass(slots=True, eq=False)
class Watched:
    """A job being watched, and what has been seen of it so far (monotonic times). Written by
    the pending registry (readings: polls, state, first poll, last seen, creation time,
    listable, sweeps missed), the poller (errors, final) and the schedule (ticket)."""

    job: Job
    admitted: float
    deadline: float | None = None
    polls: int = 0
    errors: int = 0
    state: str | None = None
    first_poll: float | None = None
    first_poll_at: datetime | None = field(default=None)
    last_seen: float | None = None
    final: bool = False
    create_time: float | None = None
    listable: bool = True
    sweeps_missed: int = 0
    ticket: int = 0

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.job.job_id

    def snapshot(self, now: float, now_at: datetime) -> JobSnapshot:
        """What has been seen of it, frozen, as it is final at `now` (monotonic) / `now_at`
        (wall clock): what leaves the poller for the downloads and the manifest."""
        started = self.first_poll if self.first_poll is not None else self.admitted
        return JobSnapshot(
            self.job, self.state, self.polls, self.first_poll_at, started, now, now_at
        )


class Schedule:
    """Due times of watched jobs; `pop_due` hands out the most overdue one."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, Watched]] = []
        self._seq = count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, watched: Watched, due: float) -> None:
        """Poll `watched` at `due` or later, retiring any entry it had; an earlier deadline wins."""
        if watched.deadline is not None:
            due = min(due, watched.deadline)
        watched.ticket += 1
        heapq.heappush(self._heap, (due, next(self._seq), watched.ticket, watched))

    def next_due(self) -> float | None:
        """When the earliest job is due, or None when nothing is scheduled."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> Watched | None:
        """The job due longest ago, if any is due at `now` (retired entries are dropped)."""
        while self._heap and self._heap[0][0] <= now:
            _, _, ticket, watched = heapq.heappop(self._heap)
            if ticket == watched.ticket and not watched.final:
                return watched
        return None


def next_poll(sent_at: float, cadence: float) -> float:
    """When a job polled at `sent_at` may be polled again: never sooner than one cadence later."""
    return sent_at + cadence
