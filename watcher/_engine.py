"""One run, wired end to end: inputs -> admission -> poller -> download pool -> manifest.

    read_inputs ─▶ screened ─▶ Admission ─▶ Pending ◀──── Sweeper (list sweeps; list mode)
                   (shard,     (dedupe)        │                │ readings
                    names,        │            ▼                ▼
                    resume)       │          Poller (routing) ──Finished──▶ download_worker x N
                                  │            │  FAILED / ERROR / TIMEOUT    (a frozen     │
                                  │            │                               snapshot)    │
                                  └─ INVALID ──┴────────▶ write_all ◀──── SUCCEED / ERROR ──┘

Before it starts, the run locks the batch (`lock.py`: one run per `--out` and manifest), removes
`.part` files a killed run left and cuts off a torn last manifest line. Every task lives in one
task group; each stream closes when its last sender does, so the run ends exactly when the last
manifest line is written. Two HTTP sessions: the API's (signed) and the downloads' (which never
carries API credentials). The library class over this is `watch.py`'s `Watcher`; progress
snapshots come from `tracker.py`.
"""

from __future__ import annotations

import math
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from itertools import count
from pathlib import Path

import aiohttp
import anyio
import structlog

from watcher._admission import Admission, screened
from watcher._bucket import Bucket
from watcher._client import USER_AGENT, MetaStudioClient
from watcher._config import DownloadPolicy, RunConfig
from watcher._download import Finished, JobDownload, download_worker
from watcher._errors import InputError, LedgerError, unwrap
from watcher._gate import ApiGate
from watcher._inputs import Job
from watcher._ledger import BatchSummary, Ledger, recover
from watcher._lock import BatchLock, lock_paths
from watcher._manifest import JobResult, ManifestFile, Tally, os_reason, write_all
from watcher._outage import Outage
from watcher._pending import Pending, PollStats
from watcher._poller import Poller
from watcher._progress import Snapshot
from watcher._resume import ResumeStats, remove_partials
from watcher._sweeper import Sweeper
from watcher._tracker import Tracker

log = structlog.get_logger("watcher.watch")


@dataclass(frozen=True, slots=True)
class Summary:
    """What a run did: the manifest's tally, the poller's counts, what resuming skipped, and
    its retries by kind (poll, list page, download, fresh links)."""

    tally: Tally
    polls: PollStats
    resume: ResumeStats
    retries: Mapping[str, int] = field(default_factory=dict)

    @property
    def batch(self) -> BatchSummary:
        """The whole batch after this run: its jobs' counting statuses beside this run's."""
        return BatchSummary.of(self.tally.statuses, self.resume.kept, self.resume.rewatched)


@dataclass(frozen=True, slots=True)
class Hooks:
    """How a caller follows a run: `on_result` hears of each manifest line once it is on disk;
    `on_progress` gets a Snapshot every `progress_interval` seconds and once at the end."""

    on_result: Callable[[JobResult], Awaitable[None]] | None = None
    on_progress: Callable[[Snapshot], None] | None = None
    progress_interval: float = 1.0


async def watch(
    config: RunConfig,
    inputs: AsyncIterator[Job | InputError],
    stop: anyio.Event | None = None,
    hooks: Hooks = Hooks(),
) -> Summary:
    """Watch every job from `inputs` to its manifest line, resuming an earlier manifest.

    Setting `stop` ends the run early: nothing more is admitted or polled, downloads already
    handed out finish (cancel the caller's scope to bound that), and jobs not final are left
    unwritten for the next run. Raises AuthError or OutageError (the run stopped; jobs not final
    were not written), LedgerError (another run holds the batch, or the manifest or `--out`
    cannot be used) and other WatcherErrors unwrapped from the task group, so callers see one
    exception, not a group; when anything else was raised too, the group (`errors.unwrap`).
    """
    try:
        return await _watch(config, inputs, stop, hooks)
    except BaseExceptionGroup as group:
        raise unwrap(group) from None


def _out_dir(config: RunConfig) -> None:
    """Make `--out` and the manifest's folder; LedgerError names the path and the OS's reason."""
    try:
        config.out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise LedgerError(f"--out {config.out_dir}: not a folder (a file is in the way)") from exc
    except OSError as exc:
        raise LedgerError(f"--out {config.out_dir}: cannot create it: {os_reason(exc)}") from exc
    if config.manifest is None:
        return
    if config.manifest.is_dir():
        raise LedgerError(f"--manifest {config.manifest}: is a folder, not a file")
    try:
        config.manifest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        folder = config.manifest.parent
        raise LedgerError(
            f"--manifest {config.manifest}: cannot create {folder}: {os_reason(exc)}"
        ) from exc


def _replace(path: Path, data: bytes) -> None:
    """Make `path` hold `data`, atomically (a temporary file beside it, renamed)."""
    part = path.with_name(path.name + ".download")
    try:
        part.write_bytes(data)
        os.replace(part, path)
    except OSError as exc:
        raise LedgerError(f"manifest {path}: cannot write: {os_reason(exc)}") from exc


def _prepare(config: RunConfig) -> Ledger:
    """Clear a killed run's leftovers and read back the batch's ledger (the lock is held)."""
    if removed := remove_partials(config.out_dir):
        log.info("removed partial files of an earlier run", count=removed)
    if config.manifest is None:
        return Ledger()
    ledger = recover(config.manifest)
    if ledger.torn_bytes:
        log.warning("cut a torn last line off the manifest", bytes=ledger.torn_bytes)
    for bad in ledger.bad[:20]:
        log.warning("manifest line skipped", line=bad.line, reason=bad.reason)
    if len(ledger.bad) > 20:
        log.warning("more manifest lines skipped", count=len(ledger.bad) - 20)
    return ledger


def storage_session(policy: DownloadPolicy) -> aiohttp.ClientSession:
    """The downloads' own HTTP session: no API credential is ever set on it (nor sent across
    redirects), no compression asked for and bytes saved as served, TLS verified unless
    `--insecure`. Timeouts are per request (`fetch_file`: a low-speed limit, no total)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=policy.workers * 2, ssl=policy.verify_tls),
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        auto_decompress=False,  # save the bytes served, so sizes match Content-Length
        read_bufsize=policy.chunk_bytes,  # fewer, larger reads (default: 64 KiB)
    )


async def _watch(
    config: RunConfig,
    inputs: AsyncIterator[Job | InputError],
    stop: anyio.Event | None,
    hooks: Hooks,
) -> Summary:
    _out_dir(config)
    with BatchLock(lock_paths(config.out_dir, config.manifest)):
        return await _watch_locked(config, inputs, stop, hooks)


async def _watch_locked(
    config: RunConfig,
    inputs: AsyncIterator[Job | InputError],
    stop: anyio.Event | None,
    hooks: Hooks,
) -> Summary:
    writer = (
        "all" if config.shard is None else f"shard-{config.shard.index}-of-{config.shard.count}"
    )
    bucket = None if config.bucket is None else Bucket.open(config.bucket, os.environ, writer)
    if bucket is not None and config.manifest is not None:
        # The ledger lives in the bucket; the local manifest is this run's copy of it.
        data = await bucket.read_ledger()
        await anyio.to_thread.run_sync(_replace, config.manifest, data)
    ledger = await anyio.to_thread.run_sync(_prepare, config)
    manifest = ManifestFile(config.manifest)
    resume = ResumeStats()
    objects = None if bucket is None else await bucket.checker(config.out_dir, verify=config.verify)
    todo = screened(inputs, config, ledger, resume, objects)
    # unique across the pods of a sharded night (a container's pid is often 1)
    run_id = (
        f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{socket.gethostname()}-{os.getpid()}"
    )
    segments = count()

    async def mirror(data: bytes) -> None:
        assert bucket is not None
        await bucket.append(run_id, next(segments), data)

    workers = config.download.workers
    results_tx, results_rx = anyio.create_memory_object_stream[JobResult](workers * 4)
    # Unbounded: a final job waits here for a download worker (a few hundred bytes each) rather
    # than holding up the poller or a sweep, which would delay every other job's reading.
    finished_tx, finished_rx = anyio.create_memory_object_stream[Finished](math.inf)
    ssl = config.download.verify_tls  # True: verify certificates (the default); False: --insecure
    api_session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=config.poll.max_in_flight, ssl=ssl),
        headers={"User-Agent": USER_AGENT},
    )
    download_session = storage_session(config.download)
    tally = Tally()
    written = anyio.Event()

    async def write() -> None:
        await write_all(
            manifest,
            results_rx,
            tally,
            on_written=hooks.on_result,
            mirror=None if bucket is None else mirror,
        )
        written.set()

    async def report(tracker: Tracker, show: Callable[[Snapshot], None]) -> None:
        while not written.is_set():
            with anyio.move_on_after(hooks.progress_interval):
                await written.wait()
            show(tracker.snapshot(input_done=pending.input_done))

    try:
        async with api_session, download_session, anyio.create_task_group() as tg:
            client = MetaStudioClient(config.api, api_session)
            outage = Outage(
                "the API",
                timeout=config.poll.outage_timeout,
                base=config.poll.outage_probe,
                cap=30 * config.poll.outage_probe,  # probes at most every 30 s by default
            )
            gate = ApiGate(client, config.poll, outage)
            pending = Pending(gate.counts)
            admission = Admission(pending, config.poll, results_tx.clone())
            poller = Poller(gate, config.poll, pending, finished_tx, results_tx.clone())
            download = JobDownload(
                download_session,
                gate.fresh,
                config.out_dir,
                config.download,
                random.Random(),
                bucket=bucket,
            )
            tg.start_soon(write)
            async with finished_rx, results_tx:
                for _ in range(workers):
                    tg.start_soon(
                        download_worker, download, finished_rx.clone(), results_tx.clone()
                    )
            if hooks.on_progress is not None:
                tracker = Tracker(pending, gate, download, tally)
                tg.start_soon(report, tracker, hooks.on_progress)
            sweeper = (
                None
                if config.poll.strategy == "single"
                else Sweeper(gate, pending, poller, config.poll)
            )
            admit = partial(admission.run, todo)
            await poller.run(stop, (admit,) if sweeper is None else (admit, sweeper.run))
    finally:
        manifest.close()
    retries = {"poll": pending.stats.retries, "list page": sweeper.retries if sweeper else 0}
    retries.update(download.retries)
    if bucket is not None:
        await bucket.compact()  # the run's segments folded into prefix/manifest.jsonl
    return Summary(tally, pending.stats, resume, retries)
