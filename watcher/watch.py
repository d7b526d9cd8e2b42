"""One run, wired end to end: inputs -> poller -> download pool -> manifest.

    read_inputs ─▶ unsettled ─Job─▶ Poller ─Finished─▶ download_worker x N ─┐
                   (resume)           │                                     ├─JobResult─▶ write_all
                                      └──── FAILED / ERROR / TIMEOUT ───────┘

Before it starts, `.part` files a killed run left are removed and a torn last manifest line is cut
off. Every task lives in one task group; each stream closes when its last sender does, so the run
ends exactly when the last manifest line is written. Two HTTP sessions: the API's (signed) and the
downloads' (which never carries API credentials).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import anyio
import structlog

from watcher.api import USER_AGENT, JobStatus, MetaStudioClient
from watcher.config import RunConfig
from watcher.download import Finished, JobDownload, download_worker
from watcher.errors import InputError, first_watcher_error
from watcher.inputs import Job
from watcher.manifest import JobResult, Previous, Tally, open_manifest, recover, write_all
from watcher.naming import Namer
from watcher.poller import Poller, PollStats
from watcher.ratelimit import RateLimiter
from watcher.resume import ResumeStats, remove_partials, unsettled
from watcher.shard import Shard
from watcher.sweeper import Sweeper

log = structlog.get_logger("watcher.watch")


@dataclass(frozen=True, slots=True)
class Summary:
    """What a run did: the manifest's tally, the poller's counts, what resuming skipped."""

    tally: Tally
    polls: PollStats
    resume: ResumeStats


async def watch(
    config: RunConfig,
    inputs: AsyncIterator[Job | InputError],
    stop: anyio.Event | None = None,
) -> Summary:
    """Watch every job from `inputs` to its manifest line, resuming an earlier manifest.

    Setting `stop` ends the run early: nothing more is admitted or polled, downloads already
    handed out finish (cancel the caller's scope to bound that), and jobs not final are left
    unwritten for the next run. Raises AuthError (the run stopped; jobs not final were not
    written) and other WatcherErrors unwrapped from the task group, so callers see one
    exception, not a group.
    """
    try:
        return await _watch(config, inputs, stop)
    except BaseExceptionGroup as group:
        raise first_watcher_error(group) or group from None


def _prepare(config: RunConfig) -> Previous:
    """Clear a killed run's leftovers and read back its manifest."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    if removed := remove_partials(config.out_dir):
        log.info("removed partial files of an earlier run", count=removed)
    if config.manifest is None:
        return Previous()
    previous = recover(config.manifest)
    if previous.torn_bytes:
        log.warning("cut a torn last line off the manifest", bytes=previous.torn_bytes)
    if previous.unreadable_lines:
        log.warning("manifest lines are not JSON", lines=list(previous.unreadable_lines[:20]))
    return previous


async def _owned(
    items: AsyncIterator[Job | InputError], shard: Shard
) -> AsyncIterator[Job | InputError]:
    """The jobs `shard` owns; bad lines pass in every shard (`watcher merge` dedupes them)."""
    async for item in items:
        if isinstance(item, InputError) or shard.owns(item.job_id):
            yield item


async def _watch(
    config: RunConfig, inputs: AsyncIterator[Job | InputError], stop: anyio.Event | None
) -> Summary:
    previous = _prepare(config)
    resume = ResumeStats()
    if config.shard is not None:
        inputs = _owned(inputs, config.shard)
    named = Namer(config.name_template).apply(inputs)
    todo = unsettled(named, previous, retry_failed=config.retry_failed, stats=resume)
    workers = config.download.workers
    results_tx, results_rx = anyio.create_memory_object_stream[JobResult](workers * 4)
    finished_tx, finished_rx = anyio.create_memory_object_stream[Finished](workers * 2)
    ssl = config.download.verify_tls  # True: verify certificates (the default); False: --insecure
    api_session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=config.poll.max_in_flight, ssl=ssl),
        headers={"User-Agent": USER_AGENT},
    )
    download_session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=workers * 2, ssl=ssl),
        headers={"User-Agent": USER_AGENT},
        auto_decompress=False,  # save the bytes served, so sizes match Content-Length
    )
    manifest = open_manifest(config.manifest)
    tally: list[Tally] = []

    async def write() -> None:
        tally.append(await write_all(manifest, results_rx, durable=config.manifest is not None))

    try:
        async with api_session, download_session, anyio.create_task_group() as tg:
            client = MetaStudioClient(config.api, api_session)
            limiter = RateLimiter(config.poll.rate)  # ShowAsyncTtsJob's; the list call has its own

            async def refresh(job_id: str) -> JobStatus:
                await limiter.acquire()
                return await client.show_job(job_id)

            download = JobDownload(
                download_session, refresh, config.out_dir, config.download, random.Random()
            )
            tg.start_soon(write)
            async with finished_rx, results_tx:
                for _ in range(workers):
                    tg.start_soon(
                        download_worker, download, finished_rx.clone(), results_tx.clone()
                    )
                poller = Poller(client, limiter, config.poll, finished_tx, results_tx.clone())
            helpers = []
            if config.poll.strategy != "single":
                list_limiter = RateLimiter(config.poll.rate)
                helpers.append(Sweeper(client, list_limiter, poller, config.poll).run)
            await poller.run(todo, stop, tuple(helpers))
    finally:
        if config.manifest is not None:
            manifest.close()
    return Summary(tally[0], poller.stats, resume)
