"""The engine as a library: `async with Watcher(config) as w: async for r in w.watch(ids)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import make_jobs, read_manifest, run_config

from watcher import AkSk, AuthError, Watcher


@pytest.mark.anyio
async def test_results_stream_as_jobs_finish(sim_factory: Any, tmp_path: Path) -> None:
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
    sim_factory: Any, tmp_path: Path
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
async def test_leaving_early_stops_the_run(sim_factory: Any, tmp_path: Path) -> None:
    """Breaking out after the first result ends the run cleanly; the rest stay unwritten."""
    jobs = make_jobs(6)
    sim = sim_factory(jobs, time_scale=0.2)  # jobs finish a while apart
    async with Watcher(run_config(sim.url, tmp_path)) as w:
        async for _ in w.watch([j.job_id for j in jobs]):
            break
    assert 1 <= len(read_manifest(tmp_path)) < 6
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.anyio
async def test_auth_errors_surface_as_themselves(sim_factory: Any, tmp_path: Path) -> None:
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
