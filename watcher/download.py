"""The download pool: save each finished job's files, then hand its manifest line on.

Workers read `Finished` jobs from one bounded stream (back-pressure on the pollers) and send
`JobResult`s to the manifest. Each file is streamed to `<name>.part` in the target folder, its size
checked against Content-Length, then renamed into place: a final name never holds a partial file.
Downloads use their own session, which carries no API credentials; only http(s) links are fetched.

Transient failures (resets, short bodies, 5xx, timeouts) are tried again with jittered backoff,
up to `retry.attempts` per file. A refused link (403: expired or revoked) and a link within
`link_margin` of its expiry are replaced by fresh ones from ShowAsyncTtsJob (`refresh`, which
goes through the shared rate limit) before the next try.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path, PurePosixPath

import aiohttp
import anyio
import anyio.to_thread
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from yarl import URL

from watcher.api import JobStatus
from watcher.audio import audio_seconds
from watcher.config import DownloadPolicy
from watcher.errors import ApiError, DownloadError, TransportError
from watcher.inputs import Job
from watcher.manifest import ErrorInfo, JobResult, SavedFile
from watcher.schedule import Watched

log = structlog.get_logger("watcher.download")
Refresh = Callable[[str], Awaitable[JobStatus]]
PART_SUFFIX = ".part"
SUFFIXES = {"audio": ".wav", "info": ".info.json", "srt": ".srt", "action": ".action.json"}
AUDIO_SUFFIXES = frozenset({".wav", ".mp3"})


@dataclass(frozen=True, slots=True)
class Finished:
    """A job the API reported SUCCEED, with the links to fetch."""

    watched: Watched
    status: JobStatus
    finished: float
    finished_at: datetime


def file_name(stem: str, kind: str, url: str) -> str:
    """The file name for one kind of result: `<stem>.wav` (or `.mp3`), `.srt`, `.info.json`..."""
    suffix = SUFFIXES.get(kind, f".{kind}")
    if kind == "audio":
        url_suffix = PurePosixPath(URL(url).path).suffix.lower()
        if url_suffix in AUDIO_SUFFIXES:
            suffix = url_suffix
    return f"{stem}{suffix}"


def _refusal(status: int, body: bytes) -> str:
    """A short reason from an object-storage error body (XML `<Code>`/`<Message>`), if any."""
    text = body[:2000].decode("utf-8", "replace")
    found = [
        m.group(1)
        for tag in ("Code", "Message")
        if (m := re.search(f"<{tag}>([^<]*)</{tag}>", text))
    ]
    return f"HTTP {status}" + (f" {': '.join(found)}" if found else "")


class _PartFile:
    """The `.part` file a download is written to, hashed as it is written. Every method is
    blocking, meant for a worker thread: each body chunk costs one thread hand-off, which
    writes and hashes it (hashlib releases the GIL, so hashing runs beside the event loop)."""

    __slots__ = ("_file", "digest", "part", "size")

    def __init__(self, part: Path) -> None:
        self.part = part
        self._file = part.open("wb")
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self._file.write(chunk)
        self.size += len(chunk)

    def finish(self, target: Path, inspect: Callable[[Path], float] | None) -> float | None:
        """Close, check (`inspect`: ValueError when it is not what it claims), and rename."""
        self._file.close()
        duration = inspect(self.part) if inspect is not None else None
        os.replace(self.part, target)
        return duration

    def close(self) -> None:
        self._file.close()

    @classmethod
    def whole(
        cls, body: bytes, part: Path, target: Path, inspect: Callable[[Path], float] | None
    ) -> tuple[_PartFile, float | None]:
        """A small body, complete in memory, stored in one go (one thread hand-off per file)."""
        out = cls(part)
        try:
            out.write(body)
            return out, out.finish(target, inspect)
        finally:
            out.close()


async def fetch_file(
    session: aiohttp.ClientSession,
    url: str,
    target: Path,
    policy: DownloadPolicy,
    inspect: Callable[[Path], float] | None = None,
) -> SavedFile:
    """Stream `url` to `target` via a `.part` file; DownloadError when it cannot be saved.

    `inspect`, if given, checks the complete `.part` before it gets its final name (in a worker
    thread) and returns a duration; a ValueError from it is a BAD_AUDIO error. A body of at
    most `chunk_bytes` is read whole and stored in a single worker-thread call.
    """
    if URL(url).scheme not in ("http", "https"):
        raise DownloadError(f"refusing a link that is not http(s): scheme {URL(url).scheme!r}")
    part = target.with_name(target.name + PART_SUFFIX)
    run = anyio.to_thread.run_sync
    out: _PartFile | None = None
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=policy.timeout)) as resp:
            if resp.status != 200:
                reason = _refusal(resp.status, await resp.content.read(2000))
                raise DownloadError(
                    f"{target.name}: {reason}",
                    transient=resp.status >= 500,
                    expired=resp.status == 403,
                )
            expected = resp.content_length
            cap = policy.max_file_bytes
            if cap is not None and expected is not None and expected > cap:
                raise DownloadError(f"{target.name}: {expected} bytes is over --max-file-bytes")
            if expected is not None and expected <= policy.chunk_bytes:
                body = await resp.read()
                _check_size(target, len(body), expected)
                out, duration = await run(_PartFile.whole, body, part, target, inspect)
            else:
                out = await run(_PartFile, part)
                async for chunk in resp.content.iter_chunked(policy.chunk_bytes):
                    if cap is not None and out.size + len(chunk) > cap:
                        raise DownloadError(f"{target.name}: over --max-file-bytes ({cap})")
                    await run(out.write, chunk)
                _check_size(target, out.size, expected)
                duration = await run(out.finish, target, inspect)
    except (aiohttp.ClientError, TimeoutError) as exc:
        await _discard(part, out)
        raise DownloadError(
            f"{target.name}: {exc.__class__.__name__}: {exc}", transient=True
        ) from exc
    except ValueError as exc:
        await _discard(part, out)
        raise DownloadError(f"{target.name}: {exc}", code="BAD_AUDIO") from exc
    except OSError as exc:
        await _discard(part, out)
        raise DownloadError(f"{target.name}: cannot write: {exc.strerror or exc}") from exc
    except BaseException:
        await _discard(part, out)
        raise
    assert out is not None  # every path that gets here stored the body
    return SavedFile(str(target), out.size, out.digest.hexdigest(), duration)


def _check_size(target: Path, size: int, expected: int | None) -> None:
    if expected is not None and size != expected:
        raise DownloadError(f"{target.name}: got {size} of {expected} bytes", transient=True)


async def _discard(part: Path, out: _PartFile | None) -> None:
    with anyio.CancelScope(shield=True):
        if out is not None:
            await anyio.to_thread.run_sync(out.close)
        await anyio.Path(part).unlink(missing_ok=True)


def link_expiry(url: str, obtained: float, ttl: float) -> float:
    """When a link stops working (epoch seconds): its `Expires` parameter, else `obtained + ttl`."""
    expires = URL(url).query.get("Expires", "")
    return float(expires) if expires.isdigit() else obtained + ttl


async def _fresh_links(refresh: Refresh, job_id: str) -> dict[str, str]:
    try:
        status = await refresh(job_id)
    except (ApiError, TransportError) as exc:
        raise DownloadError(f"fresh links: {exc}", transient=exc.transient) from exc
    if status.state != "SUCCEED" or status.failed or not status.links:
        raise DownloadError(f"fresh links: the job now reports state {status.state}")
    return dict(status.links)


@dataclass(slots=True)
class JobDownload:
    """Saving one job's files, with retries and fresh links as the module docstring says."""

    session: aiohttp.ClientSession
    refresh: Refresh
    out_dir: Path
    policy: DownloadPolicy
    rng: random.Random
    wall_clock: Callable[[], float] = time.time
    finished: int = 0

    async def _fetch(self, job: Job, kind: str, url: str) -> SavedFile:
        target = self.out_dir / file_name(job.stem, kind, url)
        inspect = partial(audio_seconds, suffix=target.suffix) if kind == "audio" else None
        return await fetch_file(self.session, url, target, self.policy, inspect)

    def wants(self, kind: str) -> bool:
        """Whether `--files` asks for this kind of file."""
        return self.policy.kinds is None or kind in self.policy.kinds

    async def save(self, job: Job, links: dict[str, str], obtained: float) -> dict[str, SavedFile]:
        """The job's linked files that `--files` wants, saved under `out_dir` and named after
        its stem; DownloadError names the file."""
        job_id = job.job_id
        saved: dict[str, SavedFile] = {}
        for kind in [k for k in links if self.wants(k)]:
            stale = False  # the last try was refused as expired: fetch fresh links first
            for attempt in range(1, self.policy.retry.attempts + 1):
                try:
                    expiry = link_expiry(links[kind], obtained, self.policy.link_ttl)
                    if stale or expiry - self.wall_clock() < self.policy.link_margin:
                        links, obtained = (
                            await _fresh_links(self.refresh, job_id),
                            self.wall_clock(),
                        )
                        stale = False
                    if kind not in links:
                        raise DownloadError(f"fresh links for {job_id} lack the {kind} file")
                    saved[kind] = await self._fetch(job, kind, links[kind])
                    break
                except DownloadError as exc:
                    if attempt == self.policy.retry.attempts or not (exc.transient or exc.expired):
                        raise
                    log.info("download failed, will retry", job_id=job_id, error=str(exc))
                    stale = stale or exc.expired  # a failed refresh leaves the link refused
                    if not stale:
                        await anyio.sleep(self.policy.retry.delay(attempt, self.rng))
        return saved


async def download_worker(
    download: JobDownload,
    jobs: MemoryObjectReceiveStream[Finished],
    results: MemoryObjectSendStream[JobResult],
) -> None:
    """Save jobs until the stream closes; send one SUCCEED or ERROR result per job."""
    async with jobs, results:
        async for done in jobs:
            w, request_id = done.watched, done.status.request_id
            now, now_at = done.finished, done.finished_at
            try:
                links = dict(done.status.links)
                files = await download.save(w.job, links, now_at.timestamp())
            except DownloadError as exc:
                download.finished += 1
                error = ErrorInfo(exc.code, str(exc), request_id)
                await results.send(w.result("ERROR", now=now, now_at=now_at, error=error))
                continue
            missing = None
            if "audio" not in files and download.wants("audio"):
                missing = ErrorInfo(
                    "NO_AUDIO", "the job succeeded without an audio link", request_id
                )
            download.finished += 1
            status = "SUCCEED" if missing is None else "ERROR"
            await results.send(w.result(status, now=now, now_at=now_at, files=files, error=missing))
