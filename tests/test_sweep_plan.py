"""Which pages adaptive sweeps read when: the front every cadence, quiet pages down to the
max-gap floor, and a uniform round robin when changes are spread over the whole window.

Time is a plain number here (a local fake clock: `plan` is pure and takes `now`); `Model`
plays a sweeper's bookkeeping against a made-up queue, tick by tick.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field, replace
from typing import Any, cast

import anyio
import pytest
from helpers import FAST

from watcher._download import Finished
from watcher._gate import ApiCounts, ApiGate
from watcher._inputs import Job
from watcher._manifest import JobResult
from watcher._parse import JobPage, JobStatus, ListedJob
from watcher._pending import Pending
from watcher._poller import Poller
from watcher._schedule import Watched
from watcher._sweep_plan import PAGE, ChangeRate, Plan, Seat, plan
from watcher._sweeper import Sweeper

CADENCE = 3.0
MAX_GAP = 60.0
BUDGET = 27  # pages one sweep may read: 10 req/s x 0.9 x 3 s
BUSY = 3.0  # changes per page and second: any quiet of 7 s or more means something


def seats(states: list[str | None], read_at: float | None = 0.0, quiet: float = 0.0) -> list[Seat]:
    """One seat per state, position i (page i // PAGE), all read at `read_at`."""
    return [
        Seat(f"j{i}", i, state, read_at, None if read_at is None else quiet)
        for i, state in enumerate(states)
    ]


def due(seats: list[Seat], now: float, budget: int = BUDGET, change_rate: float = BUSY) -> Plan:
    """The plan at `now` with this test's cadence and floor."""
    return plan(
        seats, now, cadence=CADENCE, max_gap=MAX_GAP, budget=budget, change_rate=change_rate
    )


def test_the_front_and_processing_pages_are_read_every_cadence_and_quiet_ones_wait() -> None:
    """PROCESSING jobs and the oldest WAITING page are due a cadence later; the rest are not."""
    states: list[str | None] = ["WAITING"] * (10 * PAGE)
    states[9 * PAGE + 5] = "PROCESSING"  # the oldest page: the front of the queue
    states[4 * PAGE + 7] = "PROCESSING"  # a straggler in the middle
    # every page read at 0 and seen unchanged since -30 s: quiet pages wait 60 - 3 s
    # the front is the 100 oldest WAITING jobs: 99 on page 9, one on page 8
    # all read at once: ties go to the older page (nearer the front) first
    assert due(seats(states, 0.0, -30.0), 3.0) == Plan(pages=(9, 8, 4), singles=())
    # sweeps start a cadence apart: a hot page read late in the last one is still due now
    assert due(seats(states, 0.0, -30.0), 1.0).pages == (9, 8, 4)


def test_a_quiet_page_is_read_again_after_twice_its_quiet_time_and_at_the_floor() -> None:
    """Seen unchanged for 10 s: due 20 s after its last read; for ages: at max_gap - cadence."""
    states: list[str | None] = ["WAITING"] * (3 * PAGE)  # the front is page 2
    recent = seats(states, 0.0, -10.0)
    assert 0 not in due(recent, 15.0).pages
    assert 0 in due(recent, 19.0).pages
    ancient = seats(states, 0.0, -1000.0)
    assert 0 not in due(ancient, 50.0).pages
    assert 0 in due(ancient, 57.0).pages


def test_quiet_means_nothing_where_states_change_too_rarely_to_tell() -> None:
    """At 0.1 changes per page and second, 30 s unchanged is chance: the page stays due every
    cadence; at 1 per second the same quiet backs it off."""
    states: list[str | None] = ["WAITING"] * (3 * PAGE)
    quiet = seats(states, 0.0, -30.0)
    assert 0 in due(quiet, 3.0, change_rate=0.1).pages
    assert 0 not in due(quiet, 3.0, change_rate=1.0).pages
    assert 0 in due(quiet, 3.0, change_rate=0.0).pages  # nothing changes anywhere: uniform


def test_the_floor_goes_first_within_the_budget_longest_unread_first() -> None:
    """Pages about to pass max_gap are read before any merely due page, the oldest first; more
    than a sweep's budget of them wait for the next sweep, not for their interval; they are
    read in that order."""
    all_seats = [
        Seat(f"j{i}", i, "WAITING", -float(i // PAGE) / 10, -1000.0) for i in range(50 * PAGE)
    ]  # the front: page 49
    assert due(all_seats, 57.0, budget=5).pages == (49, 48, 47, 46, 45)
    assert due(all_seats, 57.0, budget=60).pages == tuple(range(49, -1, -1))


def test_a_page_with_one_pending_job_is_one_single_get() -> None:
    """A due page holding a single job of ours is asked with one GET of that job instead."""
    lone = [Seat("alone", 7, "PROCESSING", 0.0, 0.0)]
    crowd = [Seat(f"c{i}", PAGE + i, "PROCESSING", 0.0, 0.0) for i in range(3)]
    assert due(lone + crowd, 3.0) == Plan(pages=(1,), singles=("alone",))


def test_unread_jobs_make_their_page_due_at_once() -> None:
    """A job never read (state None, no reading) makes its page due immediately."""
    states: list[str | None] = ["WAITING"] * PAGE + [None] * PAGE
    assert set(due(seats(states, None), 0.0).pages) == {0, 1}


@dataclass
class Model:
    """A window of `pages` pages of pending jobs (newest first) and a sweeper's bookkeeping:
    each tick plans at `now`, reads the chosen pages (every job's state from `state_at`), and
    records when each page was read."""

    pages: int
    state_at: Any  # (job index, time) -> state
    last_seen: dict[int, float] = field(default_factory=dict)
    state: dict[int, str] = field(default_factory=dict)
    quiet: dict[int, float] = field(default_factory=dict)
    reads: dict[int, list[float]] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)  # final jobs: no longer pending
    processing_gaps: list[tuple[float, float]] = field(default_factory=list)  # (at, gap)
    requests: int = 0
    rate: ChangeRate = field(default_factory=lambda: ChangeRate(MAX_GAP))
    page_s: float = 0.0  # how long reading one page takes (0: no time), in the plan's order

    def tick(self, now: float) -> Plan:
        jobs = [i for i in range(self.pages * PAGE) if i not in self.done]
        chosen = plan(
            [
                Seat(f"j{i}", i, self.state.get(i), self.last_seen.get(i), self.quiet.get(i))
                for i in jobs
            ],
            now,
            cadence=CADENCE,
            max_gap=MAX_GAP,
            budget=BUDGET,
            change_rate=self.rate.per_page(now, len({i // PAGE for i in jobs})),
        )
        for k, number in enumerate(chosen.pages):
            self.requests += 1
            at = now + k * self.page_s
            self.reads.setdefault(number, []).append(at)
            members = [i for i in range(number * PAGE, (number + 1) * PAGE) if i not in self.done]
            changes = sum(
                i in self.state and self.state[i] != self.state_at(i, at) for i in members
            )
            self.rate.add(at, changes)
            for i in members:
                if self.state.get(i) == "PROCESSING":
                    self.processing_gaps.append((at, at - self.last_seen[i]))
                self.state[i] = self.state_at(i, at)
                self.last_seen[i] = at
                if self.state[i] == "SUCCEED":
                    self.done.add(i)
                if changes or i not in self.quiet:
                    self.quiet[i] = at
        return chosen

    def run(self, seconds: float) -> float:
        """Sweep for `seconds`; when the last sweep ended."""
        t = 0.0
        while t < seconds:
            chosen = self.tick(t)
            # a sweep takes as long as its pages at 9 requests/s, and at least a cadence
            t += max(CADENCE, len(chosen.pages) * max(self.page_s, 1 / 9.0))
        return t

    def max_gap(self, page: int, after: float = 0.0) -> float:
        """The longest time between two reads of `page` after `after` (0: read twice at most)."""
        times = [t for t in self.reads.get(page, []) if t >= after]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def test_a_queue_in_creation_order_reads_the_front_every_cadence_and_the_rest_rarely() -> None:
    """Creation order: the processing front is read every cadence, the back at the floor; far
    fewer requests than a uniform sweep of 100 pages (which needs 11 s a round at 9/s)."""
    pages = 100

    def state_at(i: int, t: float) -> str:
        # the oldest (highest index) jobs go first: 100 jobs start every 3 s, run 6 s
        start = (pages * PAGE - 1 - i) / 100 * 3.0
        return "WAITING" if t < start else "PROCESSING" if t < start + 6.0 else "SUCCEED"

    model = Model(pages, state_at)
    end = model.run(120.0)
    assert max(gap for at, gap in model.processing_gaps if at > 15.0) <= CADENCE + 1e-9
    assert all(end - seen <= MAX_GAP for i, seen in model.last_seen.items() if i not in model.done)
    assert all(model.max_gap(p, after=30.0) <= MAX_GAP for p in range(pages))
    assert max(model.max_gap(p, after=30.0) for p in range(pages - 60)) > 20.0  # backed off
    uniform = 120.0 / (pages / 9.0) * pages  # pages a uniform sweeper reads in 120 s
    assert model.requests < 0.6 * uniform


def test_changes_spread_over_the_window_converge_to_a_uniform_round_robin() -> None:
    """Random order: every page keeps changing, so each page is read about as often as in a
    uniform sweep (every pages / budget cadences), none starved, all at the full rate."""
    pages = 100
    rng = random.Random(7)
    starts = [rng.uniform(0, 600) for _ in range(pages * PAGE)]

    def state_at(i: int, t: float) -> str:
        s = starts[i]
        return "WAITING" if t < s else "PROCESSING" if t < s + 8.0 else "SUCCEED"

    model = Model(pages, state_at)
    model.run(300.0)
    round_trip = pages / BUDGET * CADENCE  # ~11 s: a uniform sweep at the sweep budget
    gaps = [model.max_gap(p, after=60.0) for p in range(pages)]
    assert max(gaps) <= 1.5 * round_trip + CADENCE, gaps
    reads = [len([t for t in model.reads[p] if t >= 60.0]) for p in range(pages)]
    assert max(reads) <= 1.5 * min(reads), reads  # nobody read much more often than others
    assert model.requests >= 0.9 * BUDGET * (300.0 / CADENCE)  # the budget is used, as before


def test_spread_changes_never_leave_a_page_unread_longer_than_a_uniform_round() -> None:
    """Random order, pages read one after the other at 9/s: no page waits longer than a full
    uniform round (every page once at the rate); pages read in page order within each sweep
    made some wait a round plus most of a sweep (scenario D's max delay, +12%)."""
    pages = 100
    rng = random.Random(12)
    starts = [rng.uniform(0, 600) for _ in range(pages * PAGE)]

    def state_at(i: int, t: float) -> str:
        s = starts[i]
        return "WAITING" if t < s else "PROCESSING" if t < s + 8.0 else "SUCCEED"

    model = Model(pages, state_at, page_s=1 / 9.0)
    model.run(150.0)
    uniform_round = pages / 9.0  # ~11 s: what a uniform sweep of every page takes at 9/s
    gaps = [model.max_gap(p, after=30.0) for p in range(pages)]
    assert max(gaps) <= uniform_round + 0.5, max(gaps)


class PagedGate:
    """A list call over `states` (index 0 the newest job) on a fake clock: each page takes
    `page_s` seconds; records the offsets asked."""

    def __init__(self, states: list[str], now: list[float], page_s: float) -> None:
        self.counts = ApiCounts()
        self.states, self.now, self.page_s = states, now, page_s
        self.offsets: list[int] = []
        self.list_usable = True

    async def page(
        self, *, offset: int, limit: int, since: float | None, until: float | None
    ) -> JobPage:
        self.offsets.append(offset)
        self.now[0] += self.page_s
        rows = range(offset, min(offset + limit, len(self.states)))
        return JobPage(
            len(self.states), tuple(ListedJob(f"j{i}", 1000.0, self.row(i)) for i in rows)
        )

    def row(self, index: int) -> JobStatus:
        """The status the list shows for the job at `index` now."""
        return JobStatus(self.states[index])


@pytest.mark.anyio
async def test_the_first_sweep_reads_the_front_first_and_again_each_cadence() -> None:
    """A first sweep of 50 pages at 0.5 s a page (25 s): it starts at the oldest page (the
    front, PROCESSING) after the newest (for the count), and reads it again every cadence."""
    now = [0.0]
    states = ["WAITING"] * (50 * PAGE)
    states[-PAGE:] = ["PROCESSING"] * PAGE  # the oldest page
    gate = PagedGate(states, now, 0.5)
    policy = replace(FAST, cadence=CADENCE, rate=10.0, strategy="list")
    downloads, downloaded = anyio.create_memory_object_stream[Finished](10)
    results, written = anyio.create_memory_object_stream[JobResult](10)
    with downloads, downloaded, results, written:
        pending = Pending()
        poller = Poller(
            cast(ApiGate, gate), policy, pending, downloads, results, clock=lambda: now[0]
        )
        for i in range(len(states)):
            pending.add(Watched(Job(f"j{i}", {}), admitted=-1.0))
        sweeper = Sweeper(cast(ApiGate, gate), pending, poller, policy)
        with anyio.fail_after(10):
            assert await sweeper.sweep()
    front = 49 * PAGE
    assert gate.offsets[:2] == [0, front]
    reads = [i for i, offset in enumerate(gate.offsets) if offset == front]
    assert len(reads) >= 25 * 0.5 / CADENCE  # every cadence (6 pages) over the 25 s sweep
    assert max(b - a for a, b in itertools.pairwise(reads)) <= CADENCE / 0.5 + 1


class QueueGate(PagedGate):
    """A `PagedGate` whose states follow the fake clock (`state_at(index, now)`, index 0 the
    newest job); a SUCCEED row carries its links, as the list's rows do."""

    def __init__(self, jobs: int, state_at: Any, now: list[float], page_s: float) -> None:
        super().__init__(["WAITING"] * jobs, now, page_s)
        self.state_at = state_at

    def row(self, index: int) -> JobStatus:
        """The state at the fake clock's now; a SUCCEED row carries its links."""
        state = self.state_at(index, self.now[0])
        links = {"audio": "http://storage.invalid/a.wav"} if state == "SUCCEED" else {}
        return JobStatus(state, links)


@pytest.mark.anyio
async def test_sweeps_of_a_queue_in_creation_order_read_far_fewer_pages_than_uniform_ones() -> None:
    """1,600 jobs (16 pages) worked oldest first, 20 at a time for 6 s each, on a fake clock: the
    sweeps read under 60% of the pages a uniform sweep reads (every page from the newest to the
    oldest pending job's, every sweep: what sweeps did before), only the first reads every page,
    and every job is seen SUCCEED and handed to the downloads."""
    jobs = 16 * PAGE

    def state_at(i: int, t: float) -> str:
        start = (jobs - 1 - i) // 20 * 6.0  # the oldest (highest index) first
        return "WAITING" if t < start else "PROCESSING" if t < start + 6.0 else "SUCCEED"

    now = [0.0]
    gate = QueueGate(jobs, state_at, now, 1 / 9.0)
    policy = replace(FAST, cadence=CADENCE, rate=10.0, strategy="list", max_gap=MAX_GAP)
    downloads, downloaded = anyio.create_memory_object_stream[Finished](jobs)
    results, written = anyio.create_memory_object_stream[JobResult](jobs)
    full = 0
    sweep_all = Sweeper._sweep_all

    async def counting_sweep_all(self: Sweeper, *args: Any) -> bool:
        nonlocal full
        full += 1
        return await sweep_all(self, *args)

    uniform = 0
    with downloads, downloaded, results, written, pytest.MonkeyPatch.context() as patch:
        patch.setattr(Sweeper, "_sweep_all", counting_sweep_all)
        pending = Pending()
        poller = Poller(
            cast(ApiGate, gate), policy, pending, downloads, results, clock=lambda: now[0]
        )
        for i in range(jobs):
            pending.add(Watched(Job(f"j{i}", {}), admitted=-1.0))
        sweeper = Sweeper(cast(ApiGate, gate), pending, poller, policy)
        for _ in range(1000):  # 80 groups of 6 s: about 160 sweeps
            live = [int(w.job_id[1:]) for w in pending if not w.final]
            if not live:
                break
            uniform += max(live) // PAGE + 1
            began = now[0]
            with anyio.fail_after(10):
                await sweeper.sweep()
            now[0] = max(now[0], began + CADENCE)
        handed = downloaded.statistics().current_buffer_used
    assert not live, f"{len(live)} jobs never seen SUCCEED"
    assert handed == jobs
    assert full == 1, full
    assert len(gate.offsets) < 0.6 * uniform, (len(gate.offsets), uniform)
