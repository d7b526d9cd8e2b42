"""Admission and the pending registry, on a fake clock: which input items become watched jobs
(bad lines, duplicates, shards, names, deadlines), and what the registry counts and tells."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
import structlog
from helpers import FAST, FakeClock

from watcher._admission import Admission, owned, screened
from watcher._auth import AkSk
from watcher._config import ApiConfig, PollPolicy, RunConfig
from watcher._errors import InputError
from watcher._inputs import Job
from watcher._ledger import Ledger, Line
from watcher._manifest import JobResult
from watcher._pending import Pending
from watcher._resume import ResumeStats
from watcher._schedule import Watched
from watcher._shard import Shard

WALL = datetime(2026, 1, 1, tzinfo=UTC)


async def items(*given: Job | InputError) -> AsyncIterator[Job | InputError]:
    """The input: these items, in order."""
    for item in given:
        yield item


async def admit(
    pending: Pending, policy: PollPolicy, clock: FakeClock, *given: Job | InputError
) -> list[JobResult]:
    """Run an Admission of `given` into `pending` to its end; the lines it wrote."""
    send, receive = anyio.create_memory_object_stream[JobResult](math.inf)
    with anyio.fail_after(5):
        await Admission(pending, policy, send, clock=clock).run(items(*given))
        async with receive:
            return [line async for line in receive]  # ends: admission closed its stream


@pytest.mark.anyio
async def test_bad_lines_become_invalid_lines_and_duplicates_are_skipped() -> None:
    """A bad line is an INVALID manifest line (source and line kept) and a warning; an id seen
    before is skipped with an info event; both are counted; the rest are pending, in order."""
    pending = Pending()
    bad = InputError("ids.txt", 2, "not a job id")
    with structlog.testing.capture_logs() as logs:
        lines = await admit(
            pending, FAST, FakeClock(), Job("a", line=1), bad, Job("b"), Job("a", line=4)
        )
    assert lines == [JobResult.invalid(bad)]
    assert (lines[0].status, lines[0].source, lines[0].line) == ("INVALID", "ids.txt", 2)
    assert lines[0].error is not None and lines[0].error.code == "INVALID_INPUT"
    assert [w.job_id for w in pending] == ["a", "b"]
    stats = pending.stats
    assert (stats.admitted, stats.invalid, stats.duplicates) == (2, 1, 1)
    events = {(e["event"], e["log_level"]) for e in logs}
    assert {("bad input line", "warning"), ("duplicate job id skipped", "info")} <= events
    assert pending.input_done and not pending.done


@pytest.mark.anyio
async def test_each_job_is_admitted_at_the_clock_with_its_deadline_a_timeout_later() -> None:
    """Admission time is the fake clock's; the deadline is job_timeout after it (None without)."""
    clock = FakeClock(50.0)
    timed, untimed = Pending(), Pending()
    await admit(timed, replace(FAST, job_timeout=30.0), clock, Job("a"))
    await admit(untimed, replace(FAST, job_timeout=None), clock, Job("a"))
    [a], [b] = list(timed), list(untimed)
    assert (a.admitted, a.deadline) == (50.0, 80.0)
    assert (b.admitted, b.deadline) == (50.0, None)


@pytest.mark.anyio
async def test_screening_shards_names_and_resumes_before_admission(tmp_path: Path) -> None:
    """The shard keeps its own ids and every bad line; names are applied; a job the ledger left
    FAILED is skipped and counted: the order `screened` documents."""
    jobs = [Job(f"job-{i}", {"speaker": "x"}, "ids", i) for i in range(40)]
    shard = Shard(0, 2)
    mine = [j.job_id for j in jobs if shard.owns(j.job_id)]
    bad = InputError("ids", 99, "not a job id")
    ledger = Ledger()
    ledger.add(Line("manifest.jsonl", 1, JobResult(mine[0], "FAILED")))
    api = ApiConfig("http://127.0.0.1:9", "p", AkSk("ak", "sk"))
    config = RunConfig(api, tmp_path, None, shard=shard, name_template="{speaker}-{job_id}")
    resume = ResumeStats()
    out = [item async for item in screened(items(*jobs, bad), config, ledger, resume)]
    kept = [item for item in out if isinstance(item, Job)]
    assert bad in out
    assert [j.job_id for j in kept] == mine[1:]
    assert all(j.name == f"x-{j.job_id}" for j in kept)
    assert sum(resume.kept.values()) == 1
    assert [item async for item in owned(items(bad), Shard(1, 2))] == [bad]


def test_the_registry_tells_its_listener_when_listable_jobs_come_and_go() -> None:
    """add, unlist and remove change the listable count; the listener hears each change once;
    unlisting twice changes nothing; a removed job is no longer pending."""
    pending = Pending()
    heard: list[int] = []
    pending.on_listable(lambda: heard.append(pending.listable))
    a, b = Watched(Job("a"), 0.0), Watched(Job("b"), 0.0)
    pending.add(a)
    pending.add(b)
    pending.unlist(a)
    pending.unlist(a)
    pending.remove(b)
    assert heard == [1, 2, 1, 0]
    assert len(pending) == 1 and pending.get("b") is None and not a.listable
    assert [w.job_id for w in pending.arrivals()] == ["a", "b"]
    assert list(pending.arrivals()) == []  # each arrival is handed out once


def test_readings_count_polls_the_first_poll_and_the_gaps() -> None:
    """`counted` sets the first poll (monotonic and wall clock) once; `read` counts gaps, and a
    PROCESSING one apart; sightings only for list rows."""
    pending = Pending(wall_clock=lambda: WALL)
    w = Watched(Job("a"), admitted=0.0)
    pending.add(w)
    pending.counted(w, 1.0)
    pending.read(w, "PROCESSING", 1.0)
    pending.counted(w, 4.0, sighting=True)
    pending.read(w, "WAITING", 4.0)
    pending.read(w, "WAITING", 9.0)
    stats = pending.stats
    assert (w.polls, w.first_poll, w.first_poll_at, stats.sightings) == (2, 1.0, WALL, 1)
    assert (stats.gaps, stats.gap_total, stats.processing_gaps, stats.max_gap) == (2, 8.0, 1, 5.0)
    assert pending.stages() == (1, 0, 0)
    assert pending.longest_unread(20.0) == 11.0  # open since 9 s


@pytest.mark.anyio
async def test_changed_wakes_on_notify_and_otherwise_at_its_bound() -> None:
    """`changed` returns at once after a notify from another task, and after `within` seconds
    without one."""
    pending = Pending()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pending.changed, math.inf)
            await anyio.lowlevel.checkpoint()
            pending.notify()
        await pending.changed(0.0)
