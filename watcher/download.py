"""The download pool: save each finished job's files, then hand its manifest line on.

Workers read `Finished` jobs from one bounded stream (back-pressure on the pollers) and send
`JobResult`s to the manifest. Each file is streamed to `<name>.part` in the target folder, its size
checked against Content-Length, then renamed into place: a final name never holds a partial file.
Downloads use their own session, which carries no API credentials; only http(s) links are fetched.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

import aiohttp
import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from yarl import URL

from watcher.api import JobStatus
from watcher.config import DownloadPolicy
from watcher.errors import DownloadError
from watcher.manifest import ErrorInfo, JobResult, SavedFile
from watcher.schedule import Watched

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


def file_name(job_id: str, kind: str, url: str) -> str:
    """The file name for one kind of result: `<job_id>.wav` (or `.mp3`), `.srt`, `.info.json`..."""
    suffix = SUFFIXES.get(kind, f".{kind}")
    if kind == "audio":
        url_suffix = PurePosixPath(URL(url).path).suffix.lower()
        if url_suffix in AUDIO_SUFFIXES:
            suffix = url_suffix
    return f"{job_id}{suffix}"


def _refusal(status: int, body: bytes) -> str:
    """A short reason from an object-storage error body (XML `<Code>`/`<Message>`), if any."""
    text = body[:2000].decode("utf-8", "replace")
    found = [
        m.group(1)
        for tag in ("Code", "Message")
        if (m := re.search(f"<{tag}>([^<]*)</{tag}>", text))
    ]
    return f"HTTP {status}" + (f" {': '.join(found)}" if found else "")


async def fetch_file(
    session: aiohttp.ClientSession, url: str, target: Path, policy: DownloadPolicy
) -> SavedFile:
    """Stream `url` to `target` via a `.part` file; DownloadError when it cannot be saved."""
    if URL(url).scheme not in ("http", "https"):
        raise DownloadError(f"refusing a link that is not http(s): scheme {URL(url).scheme!r}")
    part = target.with_name(target.name + PART_SUFFIX)
    digest = hashlib.sha256()
    size = 0
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
            async with await anyio.open_file(part, "wb") as out:
                async for chunk in resp.content.iter_chunked(policy.chunk_bytes):
                    digest.update(chunk)
                    size += len(chunk)
                    await out.write(chunk)
        if expected is not None and size != expected:
            raise DownloadError(f"{target.name}: got {size} of {expected} bytes", transient=True)
        await anyio.Path(part).replace(target)
    except (aiohttp.ClientError, TimeoutError) as exc:
        await _discard(part)
        raise DownloadError(
            f"{target.name}: {exc.__class__.__name__}: {exc}", transient=True
        ) from exc
    except OSError as exc:
        await _discard(part)
        raise DownloadError(f"{target.name}: cannot write: {exc.strerror or exc}") from exc
    except BaseException:
        await _discard(part)
        raise
    return SavedFile(str(target), size, digest.hexdigest())


async def _discard(part: Path) -> None:
    with anyio.CancelScope(shield=True):
        await anyio.Path(part).unlink(missing_ok=True)


async def save_job(
    session: aiohttp.ClientSession,
    links: Mapping[str, str],
    job_id: str,
    out_dir: Path,
    policy: DownloadPolicy,
) -> dict[str, SavedFile]:
    """Every linked file of one job, saved under `out_dir`."""
    saved: dict[str, SavedFile] = {}
    for kind, url in links.items():
        saved[kind] = await fetch_file(session, url, out_dir / file_name(job_id, kind, url), policy)
    return saved


async def download_worker(
    session: aiohttp.ClientSession,
    jobs: MemoryObjectReceiveStream[Finished],
    results: MemoryObjectSendStream[JobResult],
    out_dir: Path,
    policy: DownloadPolicy,
) -> None:
    """Save jobs until the stream closes; send one SUCCEED or ERROR result per job."""
    async with jobs, results:
        async for done in jobs:
            w, links, request_id = done.watched, done.status.links, done.status.request_id
            try:
                files = await save_job(session, links, w.job_id, out_dir, policy)
            except DownloadError as exc:
                error = ErrorInfo("DOWNLOAD_FAILED", str(exc), request_id)
                await results.send(
                    w.result("ERROR", now=done.finished, now_at=done.finished_at, error=error)
                )
                continue
            missing = None
            if "audio" not in files:
                missing = ErrorInfo(
                    "NO_AUDIO", "the job succeeded without an audio link", request_id
                )
            status = "SUCCEED" if missing is None else "ERROR"
            await results.send(
                w.result(
                    status, now=done.finished, now_at=done.finished_at, files=files, error=missing
                )
            )
