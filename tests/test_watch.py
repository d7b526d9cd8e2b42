"""The whole run against the simulator over loopback: inputs to manifest."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from helpers import FAST, SimFactory, make_jobs, read_manifest, run_config, run_jobs
from helpers import TEST_AK as AK

from watcher._auth import AkSk, Token
from watcher._errors import AuthError, InputError
from watcher._inputs import Job
from watcher.sim.faults import FaultPlan


@pytest.mark.anyio
async def test_every_job_succeeds_with_its_files_saved_and_verified(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Twelve jobs: twelve SUCCEED lines, files on disk matching their sha256, no .part left."""
    jobs = make_jobs(12)
    sim = sim_factory(jobs)
    summary = await run_jobs(run_config(sim.url, tmp_path), *jobs)
    lines = read_manifest(tmp_path)
    assert sorted(r["job_id"] for r in lines) == [j.job_id for j in jobs]
    assert {r["status"] for r in lines} == {"SUCCEED"}
    assert summary.tally.all_succeeded and summary.tally.statuses["SUCCEED"] == 12
    for r in lines:
        assert r["meta"] == {"n": int(r["job_id"][-3:])}
        assert {"audio", "srt", "info"} <= set(r["files"])
        for saved in r["files"].values():
            data = (tmp_path / saved["path"]).read_bytes()  # relative to the manifest's folder
            assert len(data) == saved["bytes"]
            assert hashlib.sha256(data).hexdigest() == saved["sha256"]
        assert (tmp_path / r["files"]["audio"]["path"]).read_bytes()[:4] == b"RIFF"
        assert r["polls"] >= 1 and r["error"] is None and r["first_poll_at"].endswith("Z")
        # saved_at: when the files were saved, after SUCCEED was seen (finished_at)
        saved_at, finished_at = r["saved_at"], r["finished_at"]
        assert datetime.fromisoformat(saved_at) >= datetime.fromisoformat(finished_at)
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.anyio
async def test_failed_and_unknown_jobs_get_their_codes(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Jobs the simulator fails are FAILED with its code; an unknown id is ERROR MSS.000000003."""
    jobs = make_jobs(3)
    sim = sim_factory(jobs, fail_percent=100)
    summary = await run_jobs(run_config(sim.url, tmp_path), *jobs, Job("never-created"))
    by_id = {r["job_id"]: r for r in read_manifest(tmp_path)}
    assert {by_id[j.job_id]["status"] for j in jobs} == {"FAILED"}
    assert all(by_id[j.job_id]["error"]["code"] and by_id[j.job_id]["files"] == {} for j in jobs)
    unknown = by_id["never-created"]
    assert (unknown["status"], unknown["error"]["code"]) == ("ERROR", "MSS.000000003")
    assert unknown["error"]["request_id"]
    assert not summary.tally.all_succeeded


@pytest.mark.anyio
async def test_duplicates_watched_once_and_bad_lines_recorded(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """A repeated id yields one line; a bad input line yields an INVALID line naming it."""
    jobs = make_jobs(2)
    sim = sim_factory(jobs)
    bad = InputError("in.txt", 4, "job_id '../x' is not 1-128 characters")
    summary = await run_jobs(run_config(sim.url, tmp_path), jobs[0], bad, jobs[1], jobs[0])
    lines = read_manifest(tmp_path)
    assert sorted(str(r["job_id"]) for r in lines) == ["None", "job-000", "job-001"]
    invalid = next(r for r in lines if r["status"] == "INVALID")
    assert (invalid["source"], invalid["line"]) == ("in.txt", 4)
    assert summary.polls.duplicates == 1


@pytest.mark.anyio
async def test_bad_signature_stops_the_run_and_writes_nothing(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """A refused signature raises AuthError at once; no job is written as failed; SK not in it."""
    jobs = make_jobs(5)
    sim = sim_factory(jobs)
    config = run_config(sim.url, tmp_path, credentials=AkSk(AK, "wrong-secret-key-000"))
    with pytest.raises(AuthError) as caught:
        await run_jobs(config, *jobs)
    assert caught.value.code == "APIGW.0301"
    assert "wrong-secret-key" not in str(caught.value)
    assert read_manifest(tmp_path) == []
    assert sim.sim.stats.count("ShowAsyncTtsJob") <= 5


@pytest.mark.anyio
async def test_token_auth(sim_factory: SimFactory, tmp_path: Path) -> None:
    """With an IAM token the jobs are watched as with AK/SK."""
    jobs = make_jobs(2)
    sim = sim_factory(jobs, credentials=Token("iam-token-value"))
    config = run_config(sim.url, tmp_path, credentials=Token("iam-token-value"))
    assert (await run_jobs(config, *jobs)).tally.all_succeeded


@pytest.mark.anyio
async def test_storage_never_sees_api_credentials(sim_factory: SimFactory, tmp_path: Path) -> None:
    """The object-storage route records its request headers: none is an API credential."""
    jobs = make_jobs(3)
    sim = sim_factory(jobs)
    await run_jobs(run_config(sim.url, tmp_path), *jobs)
    seen = sim.sim.storage.requests
    assert len(seen) >= 9
    forbidden = {"authorization", "x-auth-token", "x-security-token", "x-sdk-date", "x-project-id"}
    for request in seen:
        assert not forbidden & {name.lower() for name in request.header_names}


@pytest.mark.anyio
async def test_job_timeout(sim_factory: SimFactory, tmp_path: Path) -> None:
    """Jobs that never finish in time get TIMEOUT lines with their last state."""
    jobs = make_jobs(2)
    sim = sim_factory(jobs, time_scale=100.0)  # hours per job
    poll = replace(FAST, job_timeout=0.3)
    await run_jobs(run_config(sim.url, tmp_path, poll), *jobs)
    lines = read_manifest(tmp_path)
    assert [r["status"] for r in lines] == ["TIMEOUT", "TIMEOUT"]
    assert {r["state"] for r in lines} <= {"WAITING", "PROCESSING"}
    # when exactly (at the deadline, not the next poll): test_engine, on a fake clock


@pytest.mark.anyio
async def test_shared_rate_keeps_under_the_gateway_limit(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Twenty eager jobs polled singly at --rate 40 against a 50/s gateway are never throttled."""
    jobs = make_jobs(20)
    sim = sim_factory(jobs, time_scale=0.02, rate_limit=50)
    poll = replace(FAST, rate=40, strategy="single")
    summary = await run_jobs(run_config(sim.url, tmp_path, poll), *jobs)
    assert summary.tally.all_succeeded
    assert summary.polls.requests > 20
    assert summary.polls.throttled == 0
    assert sim.sim.stats.count("ShowAsyncTtsJob", 429) == 0


@pytest.mark.anyio
async def test_throttling_slows_down_and_loses_nothing(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """With the gateway answering 429 to a third of the requests (seeded: the same ones every run,
    however loaded the machine), everyone pauses and all jobs finish."""
    jobs = make_jobs(10)
    sim = sim_factory(jobs, time_scale=0.01, faults=FaultPlan(throttle=0.3), seed=2)
    poll = replace(FAST, rate=500, throttle_pause=0.2)
    summary = await run_jobs(run_config(sim.url, tmp_path, poll), *jobs)
    assert summary.polls.throttled > 0
    assert summary.tally.all_succeeded and summary.tally.statuses["SUCCEED"] == 10
