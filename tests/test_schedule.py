"""The poll schedule: cadence, fairness and deadlines, with explicit times."""

from __future__ import annotations

from itertools import pairwise

from watcher._inputs import Job
from watcher._schedule import Schedule, Watched, next_poll


def _watched(job_id: str, admitted: float = 0.0, deadline: float | None = None) -> Watched:
    return Watched(Job(job_id), admitted=admitted, deadline=deadline)


def test_nothing_is_handed_out_before_it_is_due() -> None:
    """pop_due returns None until the due time, then the job."""
    schedule = Schedule()
    schedule.push(_watched("a"), 10.0)
    assert schedule.pop_due(9.99) is None
    assert schedule.next_due() == 10.0
    popped = schedule.pop_due(10.0)
    assert popped is not None and popped.job_id == "a"
    assert len(schedule) == 0 and schedule.next_due() is None


def test_most_overdue_first_and_ties_in_admission_order() -> None:
    """When the budget is short, the job due longest ago goes first; equal due times go FIFO."""
    schedule = Schedule()
    for job_id, due in [("late", 5.0), ("t1", 1.0), ("early", 0.0), ("t2", 1.0)]:
        schedule.push(_watched(job_id), due)
    order = []
    while (w := schedule.pop_due(100.0)) is not None:
        order.append(w.job_id)
    assert order == ["early", "t1", "t2", "late"]


def test_no_job_starves_under_a_short_budget() -> None:
    """With one poll per tick and 50 jobs always due, every job is polled once per 50 ticks."""
    schedule = Schedule()
    jobs = [_watched(f"j{i}") for i in range(50)]
    for w in jobs:
        schedule.push(w, 0.0)
    polled: dict[str, list[int]] = {w.job_id: [] for w in jobs}
    for tick in range(500):
        due = schedule.pop_due(float(tick))
        assert due is not None
        polled[due.job_id].append(tick)
        schedule.push(due, next_poll(float(tick), cadence=3.0))
    assert all(len(ticks) == 10 for ticks in polled.values())
    assert all(b - a == 50 for ticks in polled.values() for a, b in pairwise(ticks))


def test_deadline_brings_a_poll_forward() -> None:
    """A job whose deadline falls before its next poll is handed out at the deadline."""
    schedule = Schedule()
    schedule.push(_watched("a", deadline=4.0), next_poll(3.0, cadence=3.0))
    assert schedule.next_due() == 4.0
