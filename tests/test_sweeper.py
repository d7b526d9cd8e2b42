"""Polling by list sweeps: --poll list and auto against the simulator's ShowTtsJob."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import (
    FAST,
    TEST_AK,
    TEST_PROJECT_ID,
    TEST_SK,
    SimFactory,
    make_jobs,
    read_manifest,
    run_config,
    run_jobs,
)

from watcher._auth import AkSk
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
