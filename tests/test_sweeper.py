"""Polling by list sweeps: --poll list and auto against the simulator's ShowTtsJob; the
sweeper's list retries and list-mode decision on a fake clock."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from helpers import (
    FAST,
    TEST_AK,
    TEST_PROJECT_ID,
    TEST_SK,
    FakeClock,
    SimFactory,
    make_jobs,
    read_manifest,
    run_config,
    run_jobs,
)

from watcher._auth import AkSk
from watcher._errors import TransportError
from watcher._gate import ApiGate, Deferred, ListUnavailable
from watcher._inputs import Job
from watcher._parse import JobPage, JobStatus
from watcher._pending import Pending
from watcher._retry import RetryPolicy
from watcher._schedule import Watched
from watcher._sweeper import Sweeper
from watcher.sim import SimConfig, SimThread, Simulator


@pytest.mark.anyio
async def test_list_sweeps_watch_many_jobs_with_few_requests(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """150 jobs (two pages) under --poll list: all SUCCEED, nearly no single GETs."""
    jobs = make_jobs(150)
    sim = sim_factory(jobs, time_scale=0.01, slots=50)
    poll = replace(FAST, cadence=0.05, strategy="list")
    summary = await run_jobs(run_config(sim.url, tmp_path, poll), *jobs)
    lines = read_manifest(tmp_path)
    assert len(lines) == 150 and {r["status"] for r in lines} == {"SUCCEED"}
    assert summary.polls.list_requests >= 2
    assert summary.polls.sightings >= 150
    assert summary.polls.requests < 15  # single GETs: only where the first sweep had not run yet
    assert summary.polls.effective_cadence is not None
    assert summary.polls.effective_cadence < 1.0
    assert sim.sim.stats.count("ShowTtsJob") == summary.polls.list_requests


@pytest.mark.anyio
async def test_auto_uses_the_list_only_when_singles_cannot_keep_up(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """auto: 4 jobs within the single-GET budget use no list call; 60 jobs beyond it do."""
    few, many = make_jobs(4, "few"), make_jobs(60, "many")
    sim = sim_factory([*few, *many], time_scale=0.01, slots=60)
    roomy = replace(FAST, rate=1000, cadence=0.05)  # capacity: 50 jobs per cadence
    small = await run_jobs(run_config(sim.url, tmp_path / "a", roomy), *few)
    assert small.polls.list_requests == 0
    tight = replace(FAST, rate=200, cadence=0.05)  # capacity: 10 jobs per cadence
    large = await run_jobs(run_config(sim.url, tmp_path / "b", tight), *many)
    assert large.polls.list_requests > 0
    assert {r["status"] for r in read_manifest(tmp_path / "b")} == {"SUCCEED"}


@pytest.mark.anyio
async def test_jobs_outside_the_list_window_are_polled_singly(tmp_path: Path) -> None:
    """Jobs created long before the lookback are missed by sweeps, then polled singly."""
    jobs = make_jobs(5, "old")
    config = SimConfig(
        project_id=TEST_PROJECT_ID,
        credentials=AkSk(TEST_AK, TEST_SK),
        time_scale=0.002,
        fail_percent=0,
        max_skew=4 * 3600,  # the simulator's clock is hours behind; let signatures pass
    )
    past = Simulator(config, wall=lambda: time.time() - 3 * 3600)  # created three hours ago
    with SimThread(config, preload=jobs, sim=past) as sim:
        poll = replace(FAST, strategy="list", list_lookback=60.0, cadence=0.05)
        summary = await run_jobs(run_config(sim.url, tmp_path, poll), *jobs)
    assert {r["status"] for r in read_manifest(tmp_path)} == {"SUCCEED"}
    assert summary.polls.list_requests >= 2
    assert summary.polls.sightings == 0
    assert summary.polls.requests >= 5


@pytest.mark.anyio
async def test_failed_jobs_seen_in_the_list_get_their_real_code_from_one_get(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """A FAILED job read from the list (fail_msg, no code) gets its code from one spare GET."""
    jobs = make_jobs(4)
    sim = sim_factory(jobs, fail_percent=100)
    poll = replace(FAST, strategy="list", cadence=0.05)
    summary = await run_jobs(run_config(sim.url, tmp_path, poll), *jobs)
    lines = read_manifest(tmp_path)
    assert {r["status"] for r in lines} == {"FAILED"}
    assert all(r["error"]["code"].startswith("MSS.") for r in lines), [r["error"] for r in lines]
    assert all(r["error"]["message"] for r in lines)
    assert summary.polls.sightings >= 4
    assert summary.polls.requests == 4  # exactly one single GET per failed job


class _Reader:
    """What a Sweeper feeds, recorded: the list-mode decisions it made and single GETs."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock: Callable[[], float] = clock
        self.wall_clock = lambda: datetime(2026, 1, 1, tzinfo=UTC)
        self.carried: list[bool] = []
        self.singly: list[str] = []

    async def observe(self, w: Watched, status: JobStatus, at: float, *, listed: bool) -> None:
        pass

    def poll_singly(self, w: Watched) -> None:
        self.singly.append(w.job_id)

    def poll_once(self, w: Watched) -> None:
        self.singly.append(w.job_id)

    def carry_by_sweeps(self, on: bool) -> None:
        self.carried.append(on)


class _ListGate:
    """A list call that fails (or defers) as scripted, then answers an empty page."""

    def __init__(self, faults: list[Exception]) -> None:
        self.faults = faults
        self.asked = 0
        self.list_usable = True
        self.reasons: list[str] = []

    async def page(self, **query: Any) -> JobPage:
        self.asked += 1
        if self.faults:
            raise self.faults.pop(0)
        return JobPage(0, ())

    def list_failed(self, reason: str) -> ListUnavailable:
        self.list_usable = False
        self.reasons.append(reason)
        return ListUnavailable(reason)


def _sweeper(
    faults: list[Exception], strategy: str = "list", attempts: int = 3
) -> tuple[Sweeper, Pending, _Reader, _ListGate, FakeClock]:
    clock = FakeClock()
    pending, reader, gate = Pending(), _Reader(clock), _ListGate(faults)
    retry = RetryPolicy(attempts=attempts, base=1.0, cap=8.0)
    policy = replace(FAST, strategy=strategy, retry=retry)
    sweeper = Sweeper(
        cast(ApiGate, gate), pending, reader, policy, rng=random.Random(5), sleep=clock.sleep
    )
    return sweeper, pending, reader, gate, clock


@pytest.mark.anyio
async def test_a_list_page_is_retried_on_the_backoff_with_no_wait_after_the_last_try() -> None:
    """Three transient faults under 3 attempts: three tries, two waits (the policy's jittered
    delays for failures 1 and 2, from the injected rng), two retries counted, the sweep cut
    short; before, a third wait followed the last try."""
    faults: list[Exception] = [TransportError("reset")] * 3
    sweeper, pending, _, gate, clock = _sweeper(faults)
    pending.add(Watched(Job("a"), admitted=clock()))
    with anyio.fail_after(5):
        assert not await sweeper.sweep()
    rng = random.Random(5)
    expected = [RetryPolicy(3, 1.0, 8.0).delay(n, rng) for n in (1, 2)]
    assert gate.asked == 3 and clock.slept == expected and sweeper.retries == 2


@pytest.mark.anyio
async def test_a_list_page_waits_out_deferrals_and_a_fault_then_goes_on() -> None:
    """A pause (Deferred 2 s), a transient fault, then an answer: the sweep completes after
    waiting 2 s and one backoff, on the injected sleep."""
    faults: list[Exception] = [Deferred(2.0, "throttled"), TransportError("reset")]
    sweeper, pending, _, gate, clock = _sweeper(faults)
    pending.add(Watched(Job("a"), admitted=clock() - 1))
    with anyio.fail_after(5):
        assert await sweeper.sweep()
    assert gate.asked == 3 and clock.slept[0] == 2.0 and len(clock.slept) == 2
    assert sweeper.retries == 1


def test_the_sweeper_alone_decides_whether_sweeps_carry_the_polling() -> None:
    """`list`: on with the first listable job, off when none is left; `single`: never on; an
    unusable list call keeps them off. Each change reaches the poller once."""
    sweeper, pending, reader, _, _ = _sweeper([])
    a, b = Watched(Job("a"), 0.0), Watched(Job("b"), 0.0)
    pending.add(a)
    pending.add(b)
    assert sweeper.sweeping and reader.carried == [True]
    pending.unlist(a)
    pending.remove(b)
    assert not sweeper.sweeping and reader.carried == [True, False]
    single, pending, reader, _, _ = _sweeper([], strategy="single")
    pending.add(Watched(Job("c"), 0.0))
    assert not single.wants() and not single.sweeping and reader.carried == []
    broken, pending, reader, gate, _ = _sweeper([])
    gate.list_usable = False
    pending.add(Watched(Job("d"), 0.0))
    assert broken.wants() and not broken.sweeping and reader.carried == []
