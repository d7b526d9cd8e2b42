"""The download pool: save each finished job's files, then hand its manifest line on.

Workers read `Finished` jobs (a frozen snapshot of each, never the poller's record) from one
stream and send `JobResult`s (built by `JobResult.of`) to the manifest. Each file is fetched by
`transfer.fetch_file` (exactly the object, or an error; see there), over the downloads' own
session, which carries no API credentials.

Transient failures (resets, short bodies, stalls, 5xx, 429 / 503 SlowDown with their Retry-After,
at most 60 s) are tried again with jittered backoff (`retry.Retrying`), up to `retry.attempts`
per file, resuming where the last try stopped. A refused link (403: expired or revoked) and a
link within `link_margin` of its expiry are replaced by fresh ones from ShowAsyncTtsJob
(`refresh`) before the next try; credentials refused for good on that call (AuthError) stop the
run. Failures that get no answer feed one `Outage("storage")`: once storage answers
nobody, downloads pause and probe instead of spending each file's tries, and past
`outage_timeout` the run stops (OutageError). Logs: each retry (`job_id`, `file`, `reason`),
"job not saved" (warning), "job saved" (debug: per-job events stay out of the info log).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path, PurePosixPath

import aiohttp
import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from yarl import URL

from watcher._audio import audio_seconds
from watcher._bucket import Bucket
from watcher._config import DownloadPolicy
from watcher._errors import ApiError, AuthError, DownloadError, TransportError
from watcher._inputs import Job
from watcher._manifest import ErrorInfo, JobResult, JobSnapshot, SavedFile
from watcher._outage import Outage
from watcher._parse import JobStatus
from watcher._retry import Retrying
from watcher._transfer import PART_SUFFIX as PART_SUFFIX
from watcher._transfer import Resume, Throttled, Unanswered, clip, discard, fetch_file

log = structlog.get_logger("watcher.download")
Refresh = Callable[[str], Awaitable[JobStatus]]
SUFFIXES = {"audio": ".wav", "info": ".info.json", "srt": ".srt", "action": ".action.json"}
AUDIO_SUFFIXES = frozenset({".wav", ".mp3"})


@dataclass(frozen=True, slots=True)
class Finished:
    """A job the API reported SUCCEED (`status`, with the links to fetch), as the poller saw it
    then (`seen`: a frozen snapshot, never the poller's live record)."""

    seen: JobSnapshot
    status: JobStatus


def file_name(stem: str, kind: str, url: str) -> str:
    """The file name for one kind of result: `<stem>.wav` (or `.mp3`), `.srt`, `.info.json`..."""
    suffix = SUFFIXES.get(kind, f".{kind}")
    if kind == "audio":
        with suppress(ValueError):  # an unusable link: fetch_file says so
            url_suffix = PurePosixPath(URL(url).path).suffix.lower()
            if url_suffix in AUDIO_SUFFIXES:
                suffix = url_suffix
    return f"{stem}{suffix}"


def link_expiry(url: str, obtained: float, ttl: float) -> float:
    """When a link stops working (epoch seconds): its `Expires` parameter, else `obtained + ttl`."""
    try:
        expires = URL(url).query.get("Expires", "")
    except ValueError:  # an unusable link: fetch_file says so
        expires = ""
    return float(expires) if expires.isascii() and expires.isdigit() else obtained + ttl


async def _fresh_links(refresh: Refresh, job_id: str) -> dict[str, str]:
    """The job's links, asked for again: DownloadError when they cannot be had (transient when
    asking again may help); AuthError, raised as itself, when the credentials are refused for
    good, which stops the run as it does for the pollers: every other job would fail alike."""
    try:
        status = await refresh(job_id)
    except AuthError:
        raise
    except (ApiError, TransportError) as exc:
        raise DownloadError(f"fresh links: {exc}", transient=exc.transient) from exc
    if status.state != "SUCCEED" or status.failed or not status.links:
        raise DownloadError(f"fresh links: the job now reports state {status.state}")
    return dict(status.links)


@dataclass(slots=True)
class JobDownload:
    """Saving one job's files, with retries and fresh links as the module docstring says.

    `outage` is storage's reachability, shared by every worker (by default one made from
    `policy.outage_timeout`); `sleep` waits out the backoff between tries."""

    session: aiohttp.ClientSession
    refresh: Refresh
    out_dir: Path
    policy: DownloadPolicy
    rng: random.Random
    wall_clock: Callable[[], float] = time.time
    finished: int = 0
    outage: Outage | None = None
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    storage: Outage = field(init=False)
    # retries by kind, for the run's summary: "download" (a file tried again), "fresh links"
    # (links fetched again after storage refused them as expired)
    retries: Counter[str] = field(default_factory=Counter)
    # --out s3:// or obs://: each checked file goes on to the bucket, and leaves `out_dir` (the
    # spool) once it is there
    bucket: Bucket | None = None

    def __post_init__(self) -> None:
        self.storage = self.outage or Outage("storage", timeout=self.policy.outage_timeout)

    async def _upload(self, saved: SavedFile, local: Path) -> SavedFile:
        """Put the checked file `local` into the bucket under its name; the spool copy goes."""
        assert self.bucket is not None
        await self.bucket.put_file(local, local.name, sha256=saved.sha256, size=saved.bytes)
        with suppress(OSError):
            await anyio.Path(local).unlink()
        return saved

    def wants(self, kind: str) -> bool:
        """Whether `--files` asks for this kind of file."""
        return self.policy.kinds is None or kind in self.policy.kinds

    async def save(self, job: Job, links: dict[str, str], obtained: float) -> dict[str, SavedFile]:
        """The job's linked files that `--files` wants, saved under `out_dir` and named after
        its stem; DownloadError names the file. OutageError when storage stays unreachable."""
        saved: dict[str, SavedFile] = {}
        for kind in [k for k in links if self.wants(k)]:
            resume = Resume()
            try:
                saved[kind], links, obtained = await self._save_one(
                    job, kind, links, obtained, resume
                )
            finally:
                if resume.part is not None:
                    await discard(resume.part)
        return saved

    async def _save_one(
        self, job: Job, kind: str, links: dict[str, str], obtained: float, resume: Resume
    ) -> tuple[SavedFile, dict[str, str], float]:
        """One file, tried up to `retry.attempts` times (tries lost to an outage not counted);
        returns it with the links as they now are. The next try after a refused link goes at
        once, with fresh links; after a throttled one, no sooner than its Retry-After."""
        job_id = job.job_id
        retrying = Retrying(self.policy.retry, self.rng, self.sleep)
        stale = False  # the last try was refused as expired: fetch fresh links first
        # Storage counts as down after failures of several files in a row, not of one file
        # tried again: only this file's first unanswered try (or a probe while down) counts.
        counted = False
        while True:
            try:
                expiry = link_expiry(links[kind], obtained, self.policy.link_ttl)
                if stale or expiry - self.wall_clock() < self.policy.link_margin:
                    if stale:
                        self.retries["fresh links"] += 1
                    links, obtained = await _fresh_links(self.refresh, job_id), self.wall_clock()
                    stale = False
                if kind not in links:
                    raise DownloadError(f"fresh links for {job_id} lack the {kind} file")
                await self.storage.wait()
                target = self.out_dir / file_name(job.stem, kind, links[kind])
                inspect = partial(audio_seconds, suffix=target.suffix) if kind == "audio" else None
                try:
                    saved = await fetch_file(
                        self.session, links[kind], target, self.policy, inspect, resume
                    )
                except Unanswered as exc:
                    if (self.storage.down or not counted) and self.storage.failed():
                        # storage is down for everyone: the try is not this file's to count
                        log.debug("storage unreachable", job_id=job_id, file=kind, reason=str(exc))
                        continue
                    counted = True
                    raise
                except DownloadError:
                    self.storage.answered()
                    raise
                self.storage.answered()
                if self.bucket is not None:
                    saved = await self._upload(saved, target)
                return saved, links, obtained
            except DownloadError as exc:
                if not (exc.transient or exc.expired):
                    raise
                hint = exc.retry_after if isinstance(exc, Throttled) else None
                delay = retrying.failed(hint=hint)
                if delay is None:  # the file's tries are used up
                    raise
                stale = stale or exc.expired  # a failed refresh leaves the link refused
                if exc.expired:  # the link, not storage, was the trouble: fresh links at once
                    delay = hint or 0.0
                # (a refresh that failed waits its backoff like any other try: asking the API
                # again at once, try after try, spent a file's tries in a second)
                self.retries["download"] += 1
                log.debug(
                    "download failed, will retry",
                    job_id=job_id,
                    file=kind,
                    reason=clip(str(exc)),
                    attempt=retrying.failures,
                    delay_s=round(delay, 2),
                )
                if delay:
                    await retrying.sleep(delay)


async def download_worker(
    download: JobDownload,
    jobs: MemoryObjectReceiveStream[Finished],
    results: MemoryObjectSendStream[JobResult],
) -> None:
    """Save jobs until the stream closes; send one SUCCEED or ERROR result per job."""
    async with jobs, results:
        async for done in jobs:
            seen, request_id = done.seen, done.status.request_id
            job_id = seen.job_id
            try:
                links = dict(done.status.links)
                files = await download.save(seen.job, links, seen.final_at.timestamp())
            except DownloadError as exc:
                download.finished += 1
                reason = clip(str(exc))
                log.warning("job not saved", job_id=job_id, code=exc.code, reason=reason)
                error = ErrorInfo(exc.code, reason, request_id)
                await results.send(JobResult.of(seen, "ERROR", error=error))
                continue
            missing = None
            if "audio" not in files and download.wants("audio"):
                missing = ErrorInfo(
                    "NO_AUDIO", "the job succeeded without an audio link", request_id
                )
                log.warning("job not saved", job_id=job_id, code="NO_AUDIO", reason=missing.message)
            else:
                log.debug("job saved", job_id=job_id, files=len(files))
            download.finished += 1
            status = "SUCCEED" if missing is None else "ERROR"
            saved_at = datetime.fromtimestamp(download.wall_clock(), UTC)
            result = JobResult.of(seen, status, files=files, error=missing, saved_at=saved_at)
            await results.send(result)
