"""List sweeps, the pure part: which pages a sweep reads when (`plan`, `ChangeRate`, `Seat`),
and the constants sweeps share. The sweeper that runs them is `_sweeper.py`.

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

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

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
