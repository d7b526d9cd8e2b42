"""One run, wired end to end: inputs -> poller -> download pool -> manifest.

    read_inputs ─▶ unsettled ─Job─▶ Poller ─Finished─▶ download_worker x N ─┐
                   (resume)           │                                     ├─JobResult─▶ write_all
                                      └──── FAILED / ERROR / TIMEOUT ───────┘

Before it starts, the run locks the batch (`lock.py`: one run per `--out` and manifest), removes
`.part` files a killed run left and cuts off a torn last manifest line. Every task lives in one
task group; each stream closes when its last sender does, so the run ends exactly when the last
manifest line is written. Two HTTP sessions: the API's (signed) and the downloads' (which never
carries API credentials).
"""

from __future__ import annotations

import math
import os
import random
import socket
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field, replace
from itertools import count
from pathlib import Path
from types import TracebackType

import aiohttp
import anyio
import structlog
from anyio.abc import TaskGroup

from watcher import _logs as logs
from watcher._bucket import Bucket
from watcher._client import USER_AGENT, MetaStudioClient
from watcher._config import DownloadPolicy, RunConfig
from watcher._download import Finished, JobDownload, download_worker
from watcher._errors import InputError, LedgerError
from watcher._exits import leaves, unwrap
from watcher._gate import ApiGate
from watcher._inputs import Job, check_job_id
from watcher._ledger import BatchSummary, Ledger, recover
from watcher._lock import BatchLock, lock_paths
from watcher._manifest import JobResult, ManifestFile, Tally, os_reason, write_all
from watcher._naming import Namer
from watcher._outage import Outage
from watcher._poller import Poller, PollStats
from watcher._progress import Snapshot
from watcher._resume import ResumeStats, remove_partials, unsettled
from watcher._shard import Shard
from watcher._sweeper import Sweeper

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
    exception, not a group; when anything else was raised too, the group (`exits.unwrap`).
    """
    try:
        return await _watch(config, inputs, stop, hooks)
    except BaseExceptionGroup as group:
        raise unwrap(group) from None


class _Tracker:
    """Builds progress snapshots from the live counters of one run."""

    WINDOW = 10.0  # seconds the request rate and cadence are averaged over

    def __init__(
        self,
        poller: Poller,
        gate: ApiGate,
        download: JobDownload,
        tally: Tally,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._poller, self._gate, self._download, self._tally = poller, gate, download, tally
        self._clock = clock
        self._started = clock()
        # (time, requests, gaps, gap total, PROCESSING gaps, their total) of recent snapshots,
        # oldest first
        self._recent: deque[tuple[float, int, int, float, int, float]] = deque(
            [(self._started, 0, 0, 0.0, 0, 0.0)]
        )

    def snapshot(self, input_done: bool) -> Snapshot:
        stats, now = self._poller.stats, self._clock()
        requests = stats.requests + stats.list_requests
        while len(self._recent) > 1 and now - self._recent[1][0] >= self.WINDOW:
            self._recent.popleft()
        then, then_requests, then_gaps, then_gap_total, then_pgaps, then_ptotal = self._recent[0]
        self._recent.append(
            (
                now,
                requests,
                stats.gaps,
                stats.gap_total,
                stats.processing_gaps,
                stats.processing_gap_total,
            )
        )
        pgaps = stats.processing_gaps - then_pgaps
        ptotal = stats.processing_gap_total - then_ptotal
        rate = (requests - then_requests) / max(now - then, 1e-9)
        gaps, gap_total = stats.gaps - then_gaps, stats.gap_total - then_gap_total
        waiting, processing, unseen = self._poller.stages()
        done = self._tally.statuses["SUCCEED"]
        finished = sum(self._tally.statuses.values())
        remaining = stats.admitted - finished
        elapsed = now - self._started
        eta = remaining / (finished / elapsed) if input_done and finished and elapsed else None
        return Snapshot(
            elapsed_s=elapsed,
            admitted=stats.admitted,
            waiting=waiting,
            processing=processing,
            unseen=unseen,
            downloading=max(0, stats.handed_off - self._download.finished),
            done=done,
            failed=finished - done,
            requests_per_s=rate,
            cadence_s=gap_total / gaps if gaps else stats.effective_cadence,
            throttled=stats.throttled,
            input_done=input_done,
            eta_s=eta,
            outage=self._gate.outage.describe() or self._download.storage.describe(),
            pause_s=self._gate.pause_left(),
            processing_cadence_s=ptotal / pgaps if pgaps else stats.processing_cadence,
            max_gap_s=self._poller.longest_unread(),
        )


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


async def _owned(
    items: AsyncIterator[Job | InputError], shard: Shard
) -> AsyncIterator[Job | InputError]:
    """The jobs `shard` owns; bad lines pass in every shard (`watcher merge` dedupes them)."""
    async for item in items:
        if isinstance(item, InputError) or shard.owns(item.job_id):
            yield item


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
    if config.shard is not None:
        inputs = _owned(inputs, config.shard)
    named = Namer(config.name_template).apply(inputs)
    objects = None if bucket is None else await bucket.checker(config.out_dir, verify=config.verify)
    todo = unsettled(
        named,
        ledger,
        retry_failed=config.retry_failed,
        stats=resume,
        verify=config.verify,
        objects=objects,
    )
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

    async def report(tracker: _Tracker, show: Callable[[Snapshot], None]) -> None:
        while not written.is_set():
            with anyio.move_on_after(hooks.progress_interval):
                await written.wait()
            show(tracker.snapshot(input_done=poller.input_done))

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
            poller = Poller(gate, config.poll, finished_tx, results_tx.clone())
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
                tracker = _Tracker(poller, gate, download, tally)
                tg.start_soon(report, tracker, hooks.on_progress)
            sweeper = (
                None if config.poll.strategy == "single" else Sweeper(gate, poller, config.poll)
            )
            await poller.run(todo, stop, () if sweeper is None else (sweeper.run,))
    finally:
        manifest.close()
    retries = {"poll": poller.stats.retries, "list page": sweeper.retries if sweeper else 0}
    retries.update(download.retries)
    if bucket is not None:
        await bucket.compact()  # the run's segments folded into prefix/manifest.jsonl
    return Summary(tally, poller.stats, resume, retries)


async def _as_items(
    jobs: Iterable[str | Job] | AsyncIterable[str | Job],
) -> AsyncIterator[Job | InputError]:
    """Job ids or Jobs from a caller, as the engine's input; bad ids become InputErrors."""

    async def each() -> AsyncIterator[str | Job]:
        if isinstance(jobs, AsyncIterable):
            async for job in jobs:
                yield job
        else:
            for job in jobs:
                yield job

    number = 0
    async for job in each():
        number += 1
        if isinstance(job, Job):
            yield job
            continue
        try:
            yield Job(check_job_id(job), {}, "<watch>", number)
        except ValueError as exc:
            yield InputError("<watch>", number, str(exc))


class Watcher:
    """The engine the CLI uses, as a library.

        async with Watcher(config) as w:
            async for result in w.watch(job_ids):
                print(result.job_id, result.status)
        print(w.summary.tally.statuses)

    Results come as their manifest lines are written (the manifest, resume, retries and
    downloads work as in `watcher run`). Leaving the block before the last result stops the
    run, as SIGINT does: nothing more is polled, downloads under way get `config.grace` seconds
    to finish, jobs not final stay unwritten for the next run. An exception in the block stops
    it at once. Errors such as AuthError are raised from the block as themselves; an unexpected
    one raised beside them comes as the exception group, so it is never hidden. `summary` is
    there however the block ends (see its docstring).
    """

    def __init__(self, config: RunConfig, hooks: Hooks = Hooks()) -> None:
        logs.default_to_stderr()
        self._config = config
        self._hooks = hooks
        self._tg: TaskGroup | None = None
        self._stop = anyio.Event()
        self._written = Tally()  # every result on disk, also those after the caller left
        self._summary: Summary | None = None
        self._delivering: anyio.CancelScope | None = None

    @property
    def summary(self) -> Summary:
        """The run's counts: what the run returned once it ended by itself or after leaving the
        block early; else (cut off, or not over yet) the results written so far, with poll and
        resume counts of zero."""
        if self._summary is not None:
            return self._summary
        return Summary(self._written, PollStats(), ResumeStats())

    async def __aenter__(self) -> Watcher:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._stop.set()  # a run the caller left early stops, as on SIGINT
        if self._delivering is not None:
            self._delivering.cancel()  # nobody reads the result it was handing over
        if exc_type is None:
            self._tg.cancel_scope.deadline = anyio.current_time() + self._config.grace
        else:
            self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            if exc is not None and list(leaves(group)) == [exc]:
                return False  # the block's own exception, as it was raised
            raise unwrap(group) from None

    async def watch(
        self, jobs: Iterable[str | Job] | AsyncIterable[str | Job]
    ) -> AsyncIterator[JobResult]:
        """Watch `jobs` (ids or Jobs) and yield each one's result when it is final."""
        if self._tg is None:
            raise RuntimeError("use Watcher inside `async with`")
        send, receive = anyio.create_memory_object_stream[JobResult](64)

        async def deliver(result: JobResult) -> None:
            self._written.add(result)
            if self._stop.is_set():
                return
            # A closed iterator: the caller is gone, and the result is on disk all the same.
            closed = (anyio.BrokenResourceError, anyio.ClosedResourceError)
            with anyio.CancelScope() as scope, suppress(*closed):
                self._delivering = scope
                await send.send(result)
            self._delivering = None

        async def run() -> None:
            async with send:
                hooks = replace(self._hooks, on_result=deliver)
                self._summary = await watch(self._config, _as_items(jobs), self._stop, hooks)

        self._tg.start_soon(run)
        async with receive:
            async for result in receive:
                yield result
