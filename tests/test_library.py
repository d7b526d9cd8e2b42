"""The engine as a library: `async with Watcher(config) as w: async for r in w.watch(ids)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
import structlog
from helpers import SimFactory, make_jobs, read_manifest, run_config

from watcher import AkSk, AuthError, Watcher
from watcher._inputs import Job
from watcher._manifest import JobResult


@pytest.mark.anyio
async def test_results_stream_as_jobs_finish(sim_factory: SimFactory, tmp_path: Path) -> None:
    """Ids (plain strings, one of them bad) come back as results, and as manifest lines."""
    jobs = make_jobs(3)
    sim = sim_factory(jobs)
    ids = [j.job_id for j in jobs] + ["../etc/passwd"]
    async with Watcher(run_config(sim.url, tmp_path)) as w:
        results = [r async for r in w.watch(ids)]
    assert sorted((str(r.job_id), r.status) for r in results) == [
        ("None", "INVALID"),
        ("job-000", "SUCCEED"),
        ("job-001", "SUCCEED"),
        ("job-002", "SUCCEED"),
    ]
    assert w.summary is not None and w.summary.tally.statuses["SUCCEED"] == 3
    assert len(read_manifest(tmp_path)) == 4


@pytest.mark.anyio
async def test_async_iterables_of_ids_are_watched_as_they_come(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """An async generator of ids works as input, as a pipe does for the CLI."""
    jobs = make_jobs(2)
    sim = sim_factory(jobs)

    async def ids() -> AsyncIterator[str]:
        for job in jobs:
            yield job.job_id

    async with Watcher(run_config(sim.url, tmp_path)) as w:
        statuses = [r.status async for r in w.watch(ids())]
    assert statuses == ["SUCCEED", "SUCCEED"]


@pytest.mark.anyio
async def test_leaving_early_stops_the_run(sim_factory: SimFactory, tmp_path: Path) -> None:
    """Breaking out after the first result (a quick job; five others take 40 minutes) ends the
    run at once and cleanly: the manifest holds exactly that one result, no .part is left, the
    summary counts it."""
    quick = Job("quick-0", {"text_length": 1})  # 0.1 s
    slow = [Job(f"slow-{i}", {"text_length": 1_000_000}) for i in range(5)]  # 40 min each
    sim = sim_factory([quick, *slow], time_scale=0.05)
    first: list[JobResult] = []
    with anyio.fail_after(30):  # a run that went on until every job was final would hit this
        async with Watcher(run_config(sim.url, tmp_path)) as w:
            async for result in w.watch([j.job_id for j in [quick, *slow]]):
                first.append(result)
                break
    assert [(r.job_id, r.status) for r in first] == [("quick-0", "SUCCEED")]
    assert [(r["job_id"], r["status"]) for r in read_manifest(tmp_path)] == [("quick-0", "SUCCEED")]
    assert not list(tmp_path.glob("*.part"))
    # README's last line, `w.summary.tally.statuses`, works after leaving early too
    assert dict(w.summary.tally.statuses) == {"SUCCEED": 1}


@pytest.mark.anyio
async def test_auth_errors_surface_as_themselves(sim_factory: SimFactory, tmp_path: Path) -> None:
    """Refused credentials raise AuthError from the `async with` block, not an exception group."""
    sim = sim_factory(make_jobs(1))
    config = run_config(sim.url, tmp_path)
    config = replace(
        config, api=replace(config.api, credentials=AkSk("TESTAK0000000000WTCH", "bad"))
    )

    async def consume() -> None:
        async with Watcher(config) as w:
            async for _ in w.watch(["job-000"]):
                pass

    with pytest.raises(AuthError):
        await consume()


@pytest.mark.anyio
async def test_summary_is_there_when_the_block_raises(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """An exception in the block stops the run at once; `summary` still counts what was written."""
    jobs = make_jobs(3)
    sim = sim_factory(jobs, time_scale=0.2)

    w = Watcher(run_config(sim.url, tmp_path))

    async def consume() -> None:
        async with w:
            async for _ in w.watch([j.job_id for j in jobs]):
                raise LookupError("the caller's own")

    with pytest.raises(LookupError, match="the caller's own"), anyio.fail_after(10):
        await consume()
    assert sum(w.summary.tally.statuses.values()) == len(read_manifest(tmp_path))


@pytest.mark.anyio
async def test_an_unexpected_error_is_not_hidden_behind_an_auth_error(
    sim_factory: SimFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TypeError beside an AuthError comes out as the group holding both."""
    from watcher import _watch as watch_module

    async def broken(*args: object, **kwargs: object) -> None:
        raise ExceptionGroup("tg", [AuthError(401, "APIGW.0301", "no", "r"), TypeError("bug")])

    monkeypatch.setattr(watch_module, "watch", broken)

    async def consume() -> None:
        async with Watcher(run_config(sim_factory().url, tmp_path)) as w:
            async for _ in w.watch(["job-000"]):
                pass

    with pytest.raises(ExceptionGroup) as caught:
        await consume()
    assert caught.group_contains(TypeError)


def test_library_logs_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without the application configuring structlog, the watcher's events reach stderr, never
    stdout (which may carry the application's own output)."""
    Watcher(run_config("http://127.0.0.1:9", tmp_path))
    structlog.get_logger("watcher.test").warning("seen on stderr")
    captured = capsys.readouterr()
    assert "seen on stderr" in captured.err and captured.out == ""
