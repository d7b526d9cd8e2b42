"""Running again: settled jobs are skipped, crash damage is repaired, signals stop cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import (
    TEST_AK,
    TEST_PROJECT_ID,
    TEST_SK,
    SimFactory,
    make_jobs,
    read_manifest,
    run_config,
    run_jobs,
    wait_until,
)

from watcher._errors import InputError
from watcher._ledger import recover


@pytest.mark.anyio
async def test_second_run_skips_every_settled_job(sim_factory: SimFactory, tmp_path: Path) -> None:
    """Rerunning a finished batch asks the API nothing and appends nothing."""
    jobs = make_jobs(5)
    sim = sim_factory(jobs)
    config = run_config(sim.url, tmp_path)
    await run_jobs(config, *jobs)
    before = (tmp_path / "manifest.jsonl").read_bytes()
    asked = sim.sim.stats.count("ShowAsyncTtsJob")
    summary = await run_jobs(config, *jobs)
    assert summary.resume.skipped == 5
    assert sim.sim.stats.count("ShowAsyncTtsJob") == asked
    assert (tmp_path / "manifest.jsonl").read_bytes() == before


@pytest.mark.anyio
async def test_missing_or_altered_files_are_fetched_again(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """A deleted file and a file whose bytes changed: those two jobs are watched again."""
    jobs = make_jobs(4)
    sim = sim_factory(jobs)
    config = run_config(sim.url, tmp_path)
    await run_jobs(config, *jobs)
    (tmp_path / "job-001.srt").unlink()
    audio = tmp_path / "job-002.wav"
    audio.write_bytes(audio.read_bytes()[:-1] + b"\x00")
    summary = await run_jobs(config, *jobs)
    assert (summary.resume.skipped, summary.resume.rewatched) == (2, 2)
    assert (tmp_path / "job-001.srt").is_file()
    last = {r["job_id"]: r for r in read_manifest(tmp_path)}
    assert len(read_manifest(tmp_path)) == 6 and last["job-002"]["status"] == "SUCCEED"


@pytest.mark.anyio
async def test_failed_jobs_are_kept_unless_retry_failed(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """FAILED jobs are settled on rerun; --retry-failed watches them again."""
    jobs = make_jobs(2)
    sim = sim_factory(jobs, fail_percent=100)
    await run_jobs(run_config(sim.url, tmp_path), *jobs)
    again = await run_jobs(run_config(sim.url, tmp_path), *jobs)
    assert again.resume.skipped == 2
    retried = await run_jobs(run_config(sim.url, tmp_path, retry_failed=True), *jobs)
    assert retried.resume.rewatched == 2
    assert [r["status"] for r in read_manifest(tmp_path)] == ["FAILED"] * 4


@pytest.mark.anyio
async def test_invalid_lines_are_not_reported_twice(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """An INVALID line from the first run is not written again for the same place."""
    sim = sim_factory([])
    bad = InputError("jobs.txt", 3, "not valid JSON")
    await run_jobs(run_config(sim.url, tmp_path), bad)
    await run_jobs(run_config(sim.url, tmp_path), bad)
    assert [r["status"] for r in read_manifest(tmp_path)] == ["INVALID"]


@pytest.mark.anyio
async def test_torn_last_line_and_partial_files_are_cleaned_up(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """After a crash mid-write: the torn line is cut, .part files removed, every job once."""
    jobs = make_jobs(3)
    sim = sim_factory(jobs)
    config = run_config(sim.url, tmp_path)
    await run_jobs(config, jobs[0])
    with (tmp_path / "manifest.jsonl").open("ab") as f:
        f.write(b'{"job_id":"job-001","status":"SUCC')  # the crash came mid-line
    (tmp_path / "job-002.wav.part").write_bytes(b"half a file")
    await run_jobs(config, *jobs)
    lines = read_manifest(tmp_path)  # parses every line: the file is valid JSONL again
    assert sorted(r["job_id"] for r in lines) == ["job-000", "job-001", "job-002"]
    assert not list(tmp_path.glob("*.part"))


def test_recover_reads_last_line_per_job(tmp_path: Path) -> None:
    """recover() keeps each job's last line and reports torn bytes and unreadable lines."""
    path = tmp_path / "m.jsonl"
    path.write_bytes(
        b'{"job_id":"a","status":"FAILED"}\nnot json\n{"job_id":"a","status":"SUCCEED"}\n{"jo'
    )
    ledger = recover(path)
    result = ledger.job("a")
    assert result is not None and result.status == "SUCCEED"
    assert (ledger.torn_bytes, [bad.line for bad in ledger.bad]) == (4, [2])
    assert path.read_bytes().endswith(b"}\n")


def test_sigint_stops_cleanly_with_130(sim_factory: SimFactory, tmp_path: Path) -> None:
    """SIGINT mid-run: exit 130 within the bound, no partial file, unfinished jobs unwritten."""
    jobs = make_jobs(3)
    sim = sim_factory(jobs, time_scale=100.0)  # jobs that take hours
    (tmp_path / "jobs.txt").write_text("".join(f"{j.job_id}\n" for j in jobs))
    env = dict(os.environ, HUAWEICLOUD_SDK_AK=TEST_AK, HUAWEICLOUD_SDK_SK=TEST_SK)
    env["HUAWEICLOUD_SDK_PROJECT_ID"] = TEST_PROJECT_ID
    command = [sys.executable, "-m", "watcher", "run", str(tmp_path / "jobs.txt")]
    command += ["--endpoint", sim.url, "--out", str(tmp_path / "out"), "--cadence", "0.05"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)  # noqa: S603
    try:
        asked = sim.sim.stats.requests
        wait_until(lambda: sum(asked().values()) >= 3, "the jobs polled a while")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert (tmp_path / "out" / "manifest.jsonl").read_bytes() == b""
    assert not list((tmp_path / "out").glob("*.part"))


def test_sigint_stops_a_run_reading_an_open_pipe(sim_factory: SimFactory, tmp_path: Path) -> None:
    """`producer | watcher run`: SIGINT ends it (130) even while the producer keeps stdin open."""
    jobs = make_jobs(2)
    sim = sim_factory(jobs, time_scale=100.0)
    env = dict(os.environ, HUAWEICLOUD_SDK_AK=TEST_AK, HUAWEICLOUD_SDK_SK=TEST_SK)
    env["HUAWEICLOUD_SDK_PROJECT_ID"] = TEST_PROJECT_ID
    command = [sys.executable, "-m", "watcher", "run", "--endpoint", sim.url]
    command += ["--out", str(tmp_path / "out"), "--cadence", "0.05", "--quiet"]
    with subprocess.Popen(  # noqa: S603
        command, env=env, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdin is not None and process.stderr is not None
        process.stdin.write("job-000\njob-001\n")
        process.stdin.flush()  # and keep it open, as a submitter still running would
        wait_until(lambda: sum(sim.sim.stats.requests().values()) >= 2, "both jobs polled")
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)  # stdin still open: the pipe must not hold the exit up
        finally:
            process.kill()
        err = process.stderr.read()
    assert process.returncode == 130, err


def _append(out: Path, *records: dict[str, Any]) -> None:
    with (out / "manifest.jsonl").open("ab") as f:
        f.write(b"".join(orjson.dumps(r) + b"\n" for r in records))


@pytest.mark.anyio
async def test_error_and_timeout_lines_are_watched_again_by_default(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """ERROR and TIMEOUT are the watcher's verdicts, not the API's: a plain rerun retries them."""
    jobs = make_jobs(2)
    sim = sim_factory(jobs, fail_percent=0)
    _append(
        tmp_path,
        {"job_id": "job-000", "status": "ERROR", "error": {"code": "TRANSPORT", "message": "x"}},
        {"job_id": "job-001", "status": "TIMEOUT", "finished_at": "2026-11-25T02:00:00Z"},
    )
    summary = await run_jobs(run_config(sim.url, tmp_path), *jobs)
    assert (summary.resume.skipped, summary.resume.rewatched) == (0, 2)
    assert [r["status"] for r in read_manifest(tmp_path)] == ["ERROR", "TIMEOUT", *["SUCCEED"] * 2]


@pytest.mark.anyio
async def test_a_rerun_from_another_directory_skips_the_finished_batch(
    sim_factory: SimFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths are relative to the manifest: a rerun from elsewhere downloads nothing again."""
    jobs = make_jobs(3)
    sim = sim_factory(jobs)
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "c").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a")
    await run_jobs(run_config(sim.url, Path("../out")), *jobs)
    monkeypatch.chdir(tmp_path / "b" / "c")
    summary = await run_jobs(run_config(sim.url, tmp_path / "out"), *jobs)
    assert (summary.resume.skipped, summary.resume.rewatched) == (3, 0)
    assert len(read_manifest(tmp_path / "out")) == 3


@pytest.mark.anyio
async def test_a_manifest_of_an_earlier_version_still_resumes(
    sim_factory: SimFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines without "v" (paths relative to the old run's directory, no mtime) still settle
    their jobs when the files are intact: checked by sha256 instead."""
    jobs = make_jobs(2)
    sim = sim_factory(jobs, fail_percent=0)
    monkeypatch.chdir(tmp_path)
    await run_jobs(run_config(sim.url, Path("out")), *jobs)
    old = []
    for record in read_manifest(tmp_path / "out"):
        del record["v"]
        for saved in record["files"].values():
            saved["path"] = f"out/{saved.pop('path')}"  # as the old run wrote it from tmp_path
            del saved["mtime_ns"]
        old.append(record)
    (tmp_path / "out" / "manifest.jsonl").write_bytes(b"")
    _append(tmp_path / "out", *old)
    summary = await run_jobs(run_config(sim.url, Path("out")), *jobs)
    assert (summary.resume.skipped, summary.resume.rewatched) == (2, 0)


@pytest.mark.anyio
async def test_damaged_lines_and_empty_succeed_lines_are_not_trusted(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """A wrong-shaped line does not crash the rerun and a SUCCEED line without files is not
    done: both jobs are watched (again) and get proper lines."""
    jobs = make_jobs(2)
    sim = sim_factory(jobs, fail_percent=0)
    _append(
        tmp_path,
        {"status": "INVALID", "line": "seven"},
        {"job_id": "job-000", "status": "SUCCEED", "files": {"audio": "x.wav"}},
        {"job_id": "job-001", "status": "SUCCEED"},
    )
    summary = await run_jobs(run_config(sim.url, tmp_path), *jobs)
    assert (summary.resume.skipped, summary.resume.rewatched) == (0, 1)
    assert summary.tally.statuses["SUCCEED"] == 2


@pytest.mark.anyio
async def test_verify_catches_changed_bytes_that_the_cheap_check_cannot(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Bytes changed with size and mtime kept: a plain rerun skips, --verify watches again."""
    jobs = make_jobs(2)
    sim = sim_factory(jobs, fail_percent=0)
    config = run_config(sim.url, tmp_path)
    await run_jobs(config, *jobs)
    audio = tmp_path / "job-001.wav"
    before = audio.stat()
    audio.write_bytes(audio.read_bytes()[:-1] + b"\x01")
    os.utime(audio, ns=(before.st_atime_ns, before.st_mtime_ns))
    plain = await run_jobs(config, *jobs)
    assert (plain.resume.skipped, plain.resume.rewatched) == (2, 0)
    verified = await run_jobs(replace(config, verify=True), *jobs)
    assert (verified.resume.skipped, verified.resume.rewatched) == (1, 1)


@pytest.mark.anyio
async def test_files_with_a_new_mtime_are_checked_by_sha256_not_fetched_again(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """A batch copied without its mtimes (`cp -r`): the bytes are read and match, so nothing is
    asked of the API and nothing is appended."""
    jobs = make_jobs(2)
    sim = sim_factory(jobs, fail_percent=0)
    config = run_config(sim.url, tmp_path)
    await run_jobs(config, *jobs)
    for path in tmp_path.glob("job-*"):
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    asked = sim.sim.stats.count("ShowAsyncTtsJob")
    summary = await run_jobs(config, *jobs)
    assert (summary.resume.skipped, summary.resume.rewatched) == (2, 0)
    assert sim.sim.stats.count("ShowAsyncTtsJob") == asked
    assert len(read_manifest(tmp_path)) == 2
