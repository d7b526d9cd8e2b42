"""The simulator's job queue and settings, on an injected clock."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from helpers import FakeClock

from watcher._auth import AkSk
from watcher.sim import SimConfig
from watcher.sim.jobs import FAILURES, JobQueue, JobState, synthesis_seconds
from watcher.sim.stats import SimStats


def make_queue(
    clock: FakeClock,
    *,
    slots: int = 1,
    fail_percent: int = 0,
    seed: int = 0,
    time_scale: float = 1.0,
    wall: FakeClock | None = None,
) -> JobQueue:
    return JobQueue(
        seed=seed,
        time_scale=time_scale,
        slots=slots,
        fail_percent=fail_percent,
        clock=clock,
        wall=wall or FakeClock(1_700_000_000.0),
    )


def test_job_moves_from_processing_to_succeed() -> None:
    """A job in a free slot is PROCESSING at once and SUCCEED after its duration."""
    clock = FakeClock()
    job = make_queue(clock).add("x" * 20, "voice")
    duration = synthesis_seconds(20)
    assert job.state_at(clock.now) is JobState.PROCESSING
    assert job.state_at(clock.now + duration - 0.001) is JobState.PROCESSING
    assert job.state_at(clock.now + duration) is JobState.SUCCEED


def test_jobs_wait_for_a_free_slot() -> None:
    """With two slots, the third and later jobs are WAITING until a slot frees up."""
    clock = FakeClock()
    queue = make_queue(clock, slots=2)
    jobs = [queue.add("y" * 40, "voice") for _ in range(5)]
    d = synthesis_seconds(40)
    assert [j.start - clock.now for j in jobs] == pytest.approx([0, 0, d, d, 2 * d])
    states = [j.state_at(clock.now) for j in jobs]
    assert states == [JobState.PROCESSING] * 2 + [JobState.WAITING] * 3
    for t in (clock.now + k * d / 3 for k in range(12)):
        busy = sum(j.state_at(t) is JobState.PROCESSING for j in jobs)
        assert busy <= 2


def test_free_slot_starts_a_late_job_at_its_creation() -> None:
    """A job created after the queue drained starts when created, not when the slot freed."""
    clock = FakeClock()
    queue = make_queue(clock)
    first = queue.add("z", "voice")
    clock.now = first.end + 50
    second = queue.add("z", "voice")
    assert second.start == clock.now


def test_duration_grows_with_text_and_time_scale() -> None:
    """Longer text takes longer; time_scale multiplies the duration."""
    clock = FakeClock()
    short = make_queue(clock, slots=3).add("a" * 10, "v")
    long = make_queue(clock, slots=3).add("a" * 1000, "v")
    fast = make_queue(clock, slots=3, time_scale=0.01).add("a" * 1000, "v")
    assert long.end - long.start > short.end - short.start
    assert fast.end - fast.start == pytest.approx((long.end - long.start) * 0.01)


def test_zero_time_scale_finishes_at_creation() -> None:
    """time_scale 0 makes a job terminal the moment it exists."""
    clock = FakeClock()
    job = make_queue(clock, time_scale=0).add("hello", "v")
    assert job.state_at(clock.now) is JobState.SUCCEED


def test_priority_is_ignored() -> None:
    """A top-priority job still queues behind earlier ones."""
    clock = FakeClock()
    queue = make_queue(clock)
    queue.add("a" * 50, "v", priority=10)
    urgent = queue.add("a" * 50, "v", priority=0)
    assert urgent.state_at(clock.now) is JobState.WAITING


def test_failure_depends_on_the_id_alone() -> None:
    """The same id fails the same way under any seed; about fail_percent of ids fail."""
    clock = FakeClock()
    ids = [f"job-{i}" for i in range(2000)]
    a = make_queue(clock, slots=4, fail_percent=10, seed=1)
    b = make_queue(clock, slots=4, fail_percent=10, seed=2)
    failures_a = [a.add("t", "v", job_id=i).failure for i in ids]
    failures_b = [b.add("t", "v", job_id=i).failure for i in ids]
    assert failures_a == failures_b
    failed = [f for f in failures_a if f is not None]
    assert 100 <= len(failed) <= 300
    assert {(f.code, f.message) for f in failed} <= set(FAILURES)


def test_failed_job_ends_failed() -> None:
    """With fail_percent 100 every job ends FAILED with a code and message."""
    clock = FakeClock()
    job = make_queue(clock, fail_percent=100).add("t", "v")
    assert job.state_at(job.end) is JobState.FAILED
    assert job.failure is not None
    assert job.failure.code.startswith("MSS.")


def test_created_ids_are_hex_and_follow_the_seed() -> None:
    """Created ids are 32 lower-case hex characters, the same sequence for the same seed."""
    clock = FakeClock()
    one = [make_queue(clock, seed=7).new_id() for _ in range(2)]
    q1, q2, q3 = (make_queue(clock, slots=2, seed=s) for s in (7, 7, 8))
    ids1 = [q1.add("t", "v").job_id for _ in range(5)]
    ids2 = [q2.add("t", "v").job_id for _ in range(5)]
    ids3 = [q3.add("t", "v").job_id for _ in range(5)]
    assert ids1 == ids2 != ids3
    assert one[0] == one[1] == ids1[0]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids1 + ids3)
    assert len(set(ids1)) == 5


def test_duplicate_id_is_refused() -> None:
    """Adding an id twice raises ValueError."""
    queue = make_queue(FakeClock())
    queue.add("t", "v", job_id="same")
    with pytest.raises(ValueError, match="already exists"):
        queue.add("t", "v", job_id="same")


def test_page_is_newest_first_with_offset_and_time_window() -> None:
    """page() counts the window and returns it newest first, skipping offset."""
    clock, wall = FakeClock(), FakeClock(1_700_000_000.0)
    queue = make_queue(clock, slots=4, wall=wall)
    ids = []
    for _ in range(6):
        ids.append(queue.add("t", "v").job_id)
        wall.now += 10
    count, page = queue.page(limit=3)
    assert count == 6
    assert [j.job_id for j in page] == ids[::-1][:3]
    count, page = queue.page(offset=4, limit=3)
    assert [j.job_id for j in page] == ids[1::-1]
    count, page = queue.page(since=1_700_000_010, until=1_700_000_030, limit=10)
    assert count == 3
    assert [j.job_id for j in page] == ids[3:0:-1]
    assert queue.page(offset=6) == (6, [])


def test_create_time_never_goes_backwards() -> None:
    """A wall clock stepping back does not reorder create_time."""
    clock, wall = FakeClock(), FakeClock(1_700_000_100.0)
    queue = make_queue(clock, slots=2, wall=wall)
    first = queue.add("t", "v")
    wall.now -= 60
    second = queue.add("t", "v")
    assert second.create_time >= first.create_time


def test_stats_count_by_api_and_status() -> None:
    """SimStats keeps per-API and per-status counts."""
    stats = SimStats()
    stats.record("ShowAsyncTtsJob", 200)
    stats.record("ShowAsyncTtsJob", 429)
    stats.record("ShowTtsJob", 200)
    assert stats.requests() == {"ShowAsyncTtsJob": 2, "ShowTtsJob": 1}
    assert stats.count("ShowAsyncTtsJob", 429) == 1
    assert stats.count("CreateAsyncTtsJob") == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"time_scale": -1.0},
        {"slots": 0},
        {"url_ttl": 0.0},
        {"fail_percent": 101},
        {"rate_limit": 0.0},
        {"project_id": ""},
    ],
)
def test_config_rejects_out_of_range_values(bad: dict[str, Any]) -> None:
    """SimConfig raises ValueError naming the bad field."""
    valid = SimConfig(project_id="p", credentials=AkSk("a", "s"))
    with pytest.raises(ValueError, match=next(iter(bad))):
        replace(valid, **bad)


def test_random_order_preloads_start_out_of_creation_order_on_the_same_slots() -> None:
    """--random-order: preloaded jobs start in a seeded shuffle of creation order, never more
    at once than the slots, and the same seed gives the same order."""
    from watcher._inputs import Job
    from watcher.sim import Simulator

    jobs = [Job(f"job-{i:03d}", {"text_length": 20}) for i in range(40)]

    def starts(seed: int, random_order: bool) -> list[float]:
        config = SimConfig(
            project_id="p",
            credentials=AkSk("AK", "SK"),
            slots=4,
            seed=seed,
            random_order=random_order,
        )
        sim = Simulator(config, clock=lambda: 0.0, wall=lambda: 1_000.0)
        sim.preload(jobs)
        found = [sim.jobs.get(job.job_id) for job in jobs]
        assert all(j is not None for j in found)
        spans = [(j.start, j.end) for j in found if j is not None]
        for t in {start for start, _ in spans}:  # at most 4 synthesising at any start time
            assert sum(start <= t < end for start, end in spans) <= 4
        return [start for start, _ in spans]

    fifo = starts(0, False)
    assert fifo == sorted(fifo)
    shuffled = starts(0, True)
    assert shuffled != sorted(shuffled)
    assert starts(0, True) == shuffled and starts(1, True) != shuffled
