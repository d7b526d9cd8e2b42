"""One run, wired end to end: inputs -> poller -> download pool -> manifest.

    read_inputs ──Job──▶ Poller ──Finished──▶ download_worker x N ──┐
                          │                                         ├──JobResult──▶ write_all
                          └──────── FAILED / ERROR / TIMEOUT ───────┘

Every task lives in one task group; each stream closes when its last sender does, so the run ends
exactly when the last manifest line is written. Two HTTP sessions: the API's (signed) and the
downloads' (which never carries API credentials).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import anyio

from watcher.api import USER_AGENT, MetaStudioClient
from watcher.config import RunConfig
from watcher.download import Finished, download_worker
from watcher.errors import InputError, WatcherError
from watcher.inputs import Job
from watcher.manifest import JobResult, Tally, open_manifest, write_all
from watcher.poller import Poller, PollStats
from watcher.ratelimit import RateLimiter


@dataclass(frozen=True, slots=True)
class Summary:
    """What a run did: the manifest's tally and the poller's counts."""

    tally: Tally
    polls: PollStats


async def watch(config: RunConfig, inputs: AsyncIterator[Job | InputError]) -> Summary:
    """Watch every job from `inputs` to its manifest line.

    Raises AuthError (the run stopped; jobs not final were not written) and other WatcherErrors
    unwrapped from the task group, so callers see one exception, not a group.
    """
    try:
        return await _watch(config, inputs)
    except BaseExceptionGroup as group:
        raise _first_watcher_error(group) or group from None


def _first_watcher_error(group: BaseExceptionGroup[BaseException]) -> WatcherError | None:
    for exc in group.exceptions:
        if isinstance(exc, WatcherError):
            return exc
        if isinstance(exc, BaseExceptionGroup) and (found := _first_watcher_error(exc)):
            return found
    return None


async def _watch(config: RunConfig, inputs: AsyncIterator[Job | InputError]) -> Summary:
    config.out_dir.mkdir(parents=True, exist_ok=True)
    workers = config.download.workers
    results_tx, results_rx = anyio.create_memory_object_stream[JobResult](workers * 4)
    finished_tx, finished_rx = anyio.create_memory_object_stream[Finished](workers * 2)
    api_session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=config.poll.max_in_flight),
        headers={"User-Agent": USER_AGENT},
    )
    download_session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=workers * 2),
        headers={"User-Agent": USER_AGENT},
        auto_decompress=False,  # save the bytes served, so sizes match Content-Length
    )
    manifest = open_manifest(config.manifest)
    tally: list[Tally] = []

    async def write() -> None:
        tally.append(await write_all(manifest, results_rx))

    try:
        async with api_session, download_session, anyio.create_task_group() as tg:
            tg.start_soon(write)
            async with finished_rx, results_tx:
                for _ in range(workers):
                    tg.start_soon(
                        download_worker,
                        download_session,
                        finished_rx.clone(),
                        results_tx.clone(),
                        config.out_dir,
                        config.download,
                    )
                poller = Poller(
                    MetaStudioClient(config.api, api_session),
                    RateLimiter(config.poll.rate),
                    config.poll,
                    finished_tx,
                    results_tx.clone(),
                )
            await poller.run(inputs)
    finally:
        if config.manifest is not None:
            manifest.close()
    return Summary(tally[0], poller.stats)
