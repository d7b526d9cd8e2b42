"""Faults the simulator injects, and how the watcher rides them out without losing a job."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from helpers import FAST, FAST_DOWNLOADS, SimFactory, make_jobs, read_manifest, run_config, run_jobs
from hostile_api import dropping_proxy

from watcher._engine import Hooks, watch
from watcher._errors import AuthError, OutageError
from watcher._inputs import Job
from watcher._progress import Snapshot
from watcher.sim.faults import FaultPlan


async def _served_sha256(url: str, job_id: str) -> dict[str, str]:
    """What the simulator serves for a job, kind -> sha256, from its introspection route."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/_sim/files/{job_id}") as r:
        doc = await r.json()
    return {kind: f["sha256"] for kind, f in doc["files"].items()}


async def _each(jobs: list[Job]) -> AsyncIterator[Job]:
    for job in jobs:
        yield job


def _assert_files_match_disk(record: dict[str, Any], out: Path) -> None:
    for saved in record["files"].values():
        data = (out / saved["path"]).read_bytes()  # paths are relative to the manifest's folder
        assert hashlib.sha256(data).hexdigest() == saved["sha256"]


@pytest.mark.anyio
async def test_transient_api_faults_are_retried_until_every_job_succeeds(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """500s, resets mid-answer, error bodies in 200s and random 429s: every job still SUCCEEDs."""
    jobs = make_jobs(12)
    faults = FaultPlan(api_500=0.15, api_reset=0.15, error_200=0.15, throttle=0.1)
    sim = sim_factory(jobs, faults=faults, seed=3)
    poll = replace(FAST, retry=replace(FAST.retry, attempts=12), throttle_pause=0.05)
    summary = await run_jobs(run_config(sim.url, tmp_path, poll), *jobs)
    lines = read_manifest(tmp_path)
    assert sorted(r["job_id"] for r in lines) == [j.job_id for j in jobs]
    assert {r["status"] for r in lines} == {"SUCCEED"}
    assert summary.polls.retries > 0
    assert summary.retries["poll"] == summary.polls.retries
    assert summary.polls.throttled > 0


@pytest.mark.anyio
async def test_persistent_500_ends_in_error_with_the_last_error(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """A job whose every answer is 500 gets ERROR with that code after the retry budget."""
    jobs = make_jobs(1)
    sim = sim_factory(jobs, faults=FaultPlan(api_500=1.0))
    await run_jobs(run_config(sim.url, tmp_path), *jobs)
    [line] = read_manifest(tmp_path)
    assert (line["status"], line["error"]["code"]) == ("ERROR", "MSS.000000002")
    assert line["error"]["request_id"]
    assert line["polls"] == FAST.retry.attempts


@pytest.mark.anyio
async def test_answers_slower_than_the_timeout_are_retried(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """A third of answers take 0.5 s against a 0.1 s client timeout: all jobs still SUCCEED."""
    jobs = make_jobs(6)
    sim = sim_factory(jobs, faults=FaultPlan(slow=0.3, slow_seconds=0.5), seed=1)
    poll = replace(FAST, retry=replace(FAST.retry, attempts=10))
    config = run_config(sim.url, tmp_path, poll, request_timeout=0.1)
    summary = await run_jobs(config, *jobs)
    assert {r["status"] for r in read_manifest(tmp_path)} == {"SUCCEED"}
    assert summary.polls.retries > 0


@pytest.mark.anyio
async def test_unknown_state_is_an_error_not_a_loop(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """A job stuck in an undocumented state (CANCELED) ends as ERROR UNKNOWN_STATE."""
    jobs = make_jobs(2)
    sim = sim_factory(jobs, faults=FaultPlan(unknown_state=1.0))
    await run_jobs(run_config(sim.url, tmp_path), *jobs)
    lines = read_manifest(tmp_path)
    assert {(r["status"], r["state"], r["error"]["code"]) for r in lines} == {
        ("ERROR", "CANCELED", "UNKNOWN_STATE")
    }
    assert all(sim.sim.expected_state(j.job_id) == "CANCELED" for j in jobs)


@pytest.mark.anyio
async def test_short_downloads_are_retried_and_files_match_what_was_served(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Downloads cut short a third of the time: every file ends complete, sha256 as served."""
    jobs = make_jobs(8)
    sim = sim_factory(jobs, faults=FaultPlan(short_download=0.3), seed=5)
    download = replace(FAST_DOWNLOADS, retry=replace(FAST_DOWNLOADS.retry, attempts=10))
    summary = await run_jobs(run_config(sim.url, tmp_path, download=download), *jobs)
    lines = read_manifest(tmp_path)
    assert {r["status"] for r in lines} == {"SUCCEED"}
    assert summary.retries["download"] > 0  # counted by kind for the summary
    for record in lines:
        _assert_files_match_disk(record, tmp_path)
        served = await _served_sha256(sim.url, record["job_id"])
        assert {k: f["sha256"] for k, f in record["files"].items()} == served
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.anyio
async def test_refused_links_are_replaced_by_fresh_ones(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Links refused as expired a third of the time: the job is asked again, files saved."""
    jobs = make_jobs(6)
    sim = sim_factory(jobs, faults=FaultPlan(expired_link=0.3), seed=2)
    download = replace(FAST_DOWNLOADS, retry=replace(FAST_DOWNLOADS.retry, attempts=10))
    summary = await run_jobs(run_config(sim.url, tmp_path, download=download), *jobs)
    assert {r["status"] for r in read_manifest(tmp_path)} == {"SUCCEED"}
    assert sim.sim.stats.count("ShowAsyncTtsJob") == summary.polls.requests
    refreshes = summary.polls.api.fresh
    assert refreshes > 0
    assert summary.retries["fresh links"] > 0


@pytest.mark.anyio
async def test_links_near_expiry_are_refreshed_before_use(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Links that live 2 s, with a 10 s safety margin, are each refreshed once before use."""
    jobs = make_jobs(3)
    sim = sim_factory(jobs, url_ttl=2.0)
    download = replace(FAST_DOWNLOADS, link_margin=10.0)
    summary = await run_jobs(run_config(sim.url, tmp_path, download=download), *jobs)
    lines = read_manifest(tmp_path)
    assert {r["status"] for r in lines} == {"SUCCEED"}
    assert sim.sim.stats.count("ShowAsyncTtsJob") == summary.polls.requests
    refreshes = summary.polls.api.fresh
    files = sum(len(r["files"]) for r in lines)
    assert refreshes >= files  # a fresh link for every file, as each was "about to expire"


@pytest.mark.anyio
async def test_refused_credentials_stop_after_three_in_a_row(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """When every answer is 401, the run stops after 3 refusals, well before the key locks."""
    jobs = make_jobs(1)
    sim = sim_factory(jobs, faults=FaultPlan(auth_401=1.0))
    with pytest.raises(AuthError):
        await run_jobs(run_config(sim.url, tmp_path, replace(FAST, cadence=0.01)), *jobs)
    assert sim.sim.stats.count("ShowAsyncTtsJob", 401) == 3
    assert read_manifest(tmp_path) == []


@pytest.mark.anyio
async def test_a_file_that_cannot_be_written_is_an_error_with_the_os_message(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """A directory squatting on a file's name: ERROR DOWNLOAD_FAILED quoting the OS."""
    jobs = make_jobs(1)
    sim = sim_factory(jobs)
    (tmp_path / "job-000.wav").mkdir()
    await run_jobs(run_config(sim.url, tmp_path), *jobs)
    [line] = read_manifest(tmp_path)
    assert (line["status"], line["error"]["code"]) == ("ERROR", "DOWNLOAD_FAILED")
    assert "Is a directory" in line["error"]["message"]


@pytest.mark.anyio
async def test_max_file_bytes_caps_downloads(sim_factory: SimFactory, tmp_path: Path) -> None:
    """A cap below the audio size turns the job into an ERROR that names the flag."""
    jobs = make_jobs(1)
    sim = sim_factory(jobs)
    download = replace(FAST_DOWNLOADS, max_file_bytes=1000)
    await run_jobs(run_config(sim.url, tmp_path, download=download), *jobs)
    [line] = read_manifest(tmp_path)
    assert line["status"] == "ERROR"
    assert "--max-file-bytes" in line["error"]["message"]
    assert not list(tmp_path.glob("*.wav*"))


@pytest.mark.anyio
async def test_faults_while_fetching_fresh_links_are_retried(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Refused links whose refresh calls also meet 500s: retried, never an ERROR (soak finding)."""
    jobs = make_jobs(8)
    sim = sim_factory(jobs, faults=FaultPlan(expired_link=0.4, api_500=0.3), seed=4)
    poll = replace(FAST, retry=replace(FAST.retry, attempts=12))
    download = replace(FAST_DOWNLOADS, retry=replace(FAST_DOWNLOADS.retry, attempts=12))
    await run_jobs(run_config(sim.url, tmp_path, poll, download), *jobs)
    lines = read_manifest(tmp_path)
    assert {r["status"] for r in lines} == {"SUCCEED"}, [r["error"] for r in lines]
    assert sim.sim.faults.counts()["api-500"] > 0


@pytest.mark.anyio
async def test_a_stray_401_while_fetching_fresh_links_is_retried(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Sporadic 401s on refresh calls count like the poller's: retried, not a failed job."""
    jobs = make_jobs(8)
    sim = sim_factory(jobs, faults=FaultPlan(expired_link=0.5, auth_401=0.2), seed=6)
    poll = replace(FAST, retry=replace(FAST.retry, attempts=12), auth_failures=6)
    download = replace(FAST_DOWNLOADS, retry=replace(FAST_DOWNLOADS.retry, attempts=12))
    await run_jobs(run_config(sim.url, tmp_path, poll, download), *jobs)
    lines = read_manifest(tmp_path)
    assert {r["status"] for r in lines} == {"SUCCEED"}, [r["error"] for r in lines]
    assert sim.sim.faults.counts()["auth-401"] > 0


@pytest.mark.anyio
async def test_an_outage_pauses_the_run_instead_of_failing_jobs(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """A proxy that resets every connection for a while, then forwards: every job SUCCEEDs,
    none is ERROR TRANSPORT, though the drops outnumber every job's retry budget together."""
    jobs = make_jobs(6)
    sim = sim_factory(jobs)
    poll = replace(FAST, retry=replace(FAST.retry, attempts=2), outage_probe=0.005)
    # aiohttp tries a reset request again itself (about 2.5 resets per failure seen): 35 resets
    # are more than the 6 jobs' 2 tries each can take one by one
    snapshots: list[Snapshot] = []
    hooks = Hooks(on_progress=snapshots.append, progress_interval=0.01)
    async with dropping_proxy(sim.url, drop=35) as proxy:
        with anyio.fail_after(20):
            await watch(run_config(proxy.url, tmp_path, poll), _each(jobs), hooks=hooks)
    assert any(s.outage and "the API unreachable since" in s.outage for s in snapshots)
    assert snapshots[-1].outage is None
    lines = read_manifest(tmp_path)
    assert len(lines) == 6
    assert {r["status"] for r in lines} == {"SUCCEED"}, [r["error"] for r in lines]
    assert proxy.forwarded > 0


@pytest.mark.anyio
async def test_an_outage_past_the_timeout_stops_the_run_writing_nothing(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """The API unreachable for longer than --outage-timeout: OutageError, no manifest line."""
    jobs = make_jobs(4)
    sim = sim_factory(jobs)
    poll = replace(FAST, outage_timeout=0.3)
    async with dropping_proxy(sim.url, drop=None) as proxy:
        with anyio.fail_after(10), pytest.raises(OutageError, match="unreachable since"):
            await run_jobs(run_config(proxy.url, tmp_path, poll), *jobs)
    assert read_manifest(tmp_path) == []
    assert proxy.dropped >= 3
