"""One file from object storage to disk, exactly: `fetch_file` streams a link to `<name>.part`
and renames it into place only when it is exactly the object, or raises DownloadError.

Exactly the object: as many bytes as Content-Length says (no fewer, no more), not compressed
(`Accept-Encoding: identity` is asked; a Content-Encoding is refused), within `max_file_bytes`
with or without a Content-Length, and for audio, a WAV or MP3 whose structure covers the file
(`inspect`). Only http(s) links are fetched; a redirect elsewhere (`file://`) or in a loop is a
permanent error. No total timeout: a try that receives fewer than `speed_limit` bytes a second
over `speed_time` seconds (`LowSpeed`), or nothing at all for `speed_time`, is abandoned as
transient. A try cut short on an object with an ETag leaves its `.part` in a `Resume`, and the
next try asks for the rest (`Range` + `If-Match`; 206 and Content-Range checked; a 200, 412 or
416 starts over from byte 0); the sha256 covers the whole file.

Errors say what the retry loop needs: `Unanswered` (no usable answer: refused, reset, stalled,
5xx; what a storage outage is judged from), `Throttled` (429, 503 SlowDown, with Retry-After),
else a DownloadError that is `transient` or not. Messages start with the file name, never quote
the link, and are cut to MAX_MESSAGE characters. Cleanup never raises.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.to_thread
import structlog
from yarl import URL

from watcher._config import DownloadPolicy
from watcher._errors import DownloadError
from watcher._manifest import SavedFile
from watcher._retry import parse_retry_after

log = structlog.get_logger("watcher.transfer")
PART_SUFFIX = ".part"
MAX_MESSAGE = 300  # characters of an error message kept for the manifest and the logs
MAX_RETRY_AFTER = 60.0  # seconds: a longer Retry-After from storage is cut to this
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class Unanswered(DownloadError):
    """Storage gave no usable answer: no connection, a reset, a stall, a 5xx. Transient; what
    the storage outage is judged from."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=True)


class Throttled(DownloadError):
    """Storage asked us to slow down (429, 503 SlowDown); `retry_after` is its hint, seconds."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message, transient=True)
        self.retry_after = retry_after


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` on one line and at most `limit` characters (an ellipsis marks a cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a Retry-After header asks for (`retry.parse_retry_after`), capped at
    MAX_RETRY_AFTER; None when absent or not one of its two forms. `now`: epoch seconds."""
    seconds = parse_retry_after(value, datetime.fromtimestamp(now, UTC))
    return None if seconds is None else min(MAX_RETRY_AFTER, seconds)


def _refusal(status: int, body: bytes) -> str:
    """A short reason from an object-storage error body (XML `<Code>`/`<Message>`), if any."""
    text = body[:2000].decode("utf-8", "replace")
    found = [
        clip(m.group(1), 120)
        for tag in ("Code", "Message")
        if (m := re.search(f"<{tag}>([^<]*)", text))  # the first 2000 bytes may cut it
    ]
    return f"HTTP {status}" + (f" {': '.join(found)}" if found else "")


class LowSpeed:
    """curl's `--speed-limit`/`--speed-time`: `received()` raises Unanswered once a window of at
    least `seconds` brought fewer than `limit` bytes a second. Windows start afresh when one
    passes; a transfer that stops altogether is caught by the socket's read timeout instead."""

    __slots__ = ("_clock", "_count", "_limit", "_seconds", "_start")

    def __init__(
        self, limit: float, seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit, self._seconds, self._clock = limit, seconds, clock
        self._start, self._count = clock(), 0

    def received(self, count: int) -> None:
        """Count `count` more bytes; Unanswered when the window just ended too slow."""
        self._count += count
        now = self._clock()
        elapsed = now - self._start
        if elapsed < self._seconds:
            return
        if self._count < self._limit * elapsed:
            raise Unanswered(
                f"too slow: {self._count} bytes in {elapsed:.1f} s "
                f"(under --speed-limit {self._limit:g} B/s for --speed-time {self._seconds:g} s)"
            )
        self._start, self._count = now, 0


class Resume:
    """What an interrupted download of one file left in its `.part`, for the next try to go on
    from with a ranged GET instead of starting over. Empty until a try is cut short."""

    __slots__ = ("digest", "etag", "part", "size", "total")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget what was kept (the `.part` is rewritten from byte 0 by the next try)."""
        self.part: Path | None = None
        self.etag = ""
        self.size = self.total = 0
        self.digest: Any = None

    def keep(self, part: Path, etag: str, total: int, size: int, digest: Any) -> None:
        """Remember `size` bytes of the `total`-byte object `etag` written to `part`."""
        self.part, self.etag, self.total, self.size, self.digest = part, etag, total, size, digest

    def offset(self, part: Path) -> int:
        """Where a try writing `part` may start: the kept size, or 0."""
        return self.size if self.part == part and self.digest is not None else 0


class _PartFile:
    """The `.part` file a download is written to, hashed as it is written. Every method is
    blocking, meant for a worker thread: `write` takes a batch of body pieces (`chunk_bytes`
    of them, give or take one piece: one thread hand-off per batch) and hashes and writes each
    as it came off the socket, never joined into one copy (hashlib releases the GIL, so hashing
    runs beside the event loop)."""

    __slots__ = ("_file", "digest", "part", "size")

    def __init__(self, part: Path, resume: Resume | None = None) -> None:
        self.part = part
        if resume is not None and resume.offset(part):  # the caller checked the size on disk
            self._file = part.open("ab")
            self.digest, self.size = resume.digest.copy(), resume.size
        else:
            self._file = part.open("wb")
            self.digest, self.size = hashlib.sha256(), 0

    def write(self, pieces: list[bytes]) -> None:
        """Append `pieces`, in order, to the file and the digest."""
        for piece in pieces:
            self.digest.update(piece)
            self._file.write(piece)
            self.size += len(piece)

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
        cls,
        pieces: list[bytes],
        part: Path,
        target: Path,
        inspect: Callable[[Path], float] | None,
    ) -> tuple[_PartFile, float | None]:
        """A small body, complete in memory, stored in one go (one thread hand-off per file)."""
        out = cls(part)
        try:
            out.write(pieces)
            return out, out.finish(target, inspect)
        finally:
            out.close()


def _translate(exc: BaseException, policy: DownloadPolicy) -> DownloadError:
    """The DownloadError for an aiohttp or timeout error; messages never quote the link."""
    redirect = aiohttp.NonHttpUrlRedirectClientError | aiohttp.InvalidUrlRedirectClientError
    if isinstance(exc, redirect):
        return DownloadError(f"redirected to a link that is not http(s): {clip(str(exc), 80)}")
    if isinstance(exc, aiohttp.InvalidURL):  # its text is the link, signature and all
        return DownloadError("the link is not a usable URL")
    if isinstance(exc, aiohttp.TooManyRedirects):
        return DownloadError(f"too many redirects ({len(exc.history)}): a redirect loop?")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return Unanswered(f"no connection within {policy.connect_timeout:g} s")
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return Unanswered(f"no data for {policy.speed_time:g} s (--speed-time)")
    if isinstance(exc, aiohttp.ClientResponseError):  # an answer HTTP cannot parse
        return DownloadError(f"malformed answer: {clip(exc.message, 120)}", transient=True)
    return Unanswered(clip(f"{exc.__class__.__name__}: {exc}", 200))


async def fetch_file(
    session: aiohttp.ClientSession,
    url: str,
    target: Path,
    policy: DownloadPolicy,
    inspect: Callable[[Path], float] | None = None,
    resume: Resume | None = None,
) -> SavedFile:
    """Stream `url` to `target` via a `.part` file; DownloadError when it cannot be saved.

    `inspect`, if given, checks the complete `.part` before it gets its final name (in a worker
    thread) and returns a duration; a ValueError from it is a BAD_AUDIO error. A body of at
    most `chunk_bytes` is read whole and stored in a single worker-thread call; a larger one
    goes to the `.part` about `chunk_bytes` at a time. With `resume`, a try cut short keeps its
    `.part` there, with every byte it had read (the caller removes it if it gives up), and the
    next try with the same `resume` goes on from where it stopped. Messages start with the file
    name and are at most MAX_MESSAGE characters.
    """
    try:
        scheme = URL(url).scheme
    except ValueError as exc:  # its text would be the link, signature and all
        raise DownloadError(f"{target.name}: the link is not a usable URL") from exc
    if scheme not in ("http", "https"):
        raise DownloadError(f"refusing a link that is not http(s): scheme {scheme!r}")
    part = target.with_name(target.name + PART_SUFFIX)
    if resume is not None and resume.part not in (None, part):  # a fresh link, another name
        await discard(resume.part)
        resume.clear()
    try:
        if resume is not None and resume.offset(part):
            if await _size_on_disk(part) == resume.offset(part):
                saved = await _get(session, url, target, part, policy, inspect, resume, True)
                if saved is not None:
                    return saved
            resume.clear()  # the object changed, or the range was refused: from byte 0
        saved = await _get(session, url, target, part, policy, inspect, resume, False)
        assert saved is not None  # only a ranged GET gives up for a full one
        return saved
    except DownloadError as exc:
        raise _named(exc, target.name) from exc


async def _size_on_disk(part: Path) -> int | None:
    try:
        return (await anyio.Path(part).stat()).st_size
    except OSError:
        return None


def _named(exc: DownloadError, name: str) -> DownloadError:
    """`exc` with its message prefixed by the file name (and cut), its kind kept."""
    message = clip(f"{name}: {exc}")
    if isinstance(exc, Throttled):
        return Throttled(message, exc.retry_after)
    if isinstance(exc, Unanswered):
        return Unanswered(message)
    return DownloadError(message, transient=exc.transient, expired=exc.expired, code=exc.code)


async def _get(
    session: aiohttp.ClientSession,
    url: str,
    target: Path,
    part: Path,
    policy: DownloadPolicy,
    inspect: Callable[[Path], float] | None,
    resume: Resume | None,
    ranged: bool,
) -> SavedFile | None:
    """One GET of `url` into `part`: `ranged`, from `resume`'s offset on its ETag, else whole.
    None when a ranged GET must give way to a full one (412, a Content-Range that is not the
    one asked for)."""
    offset = resume.size if ranged and resume is not None else 0
    headers = {"Accept-Encoding": "identity"}
    if offset and resume is not None:
        headers |= {"Range": f"bytes={offset}-", "If-Match": resume.etag}
    connect = policy.connect_timeout  # `connect` also bounds name lookup and the pool's queue
    timeout = aiohttp.ClientTimeout(
        total=None, connect=connect, sock_connect=connect, sock_read=policy.speed_time
    )
    run = anyio.to_thread.run_sync
    out: _PartFile | None = None
    keep: tuple[str, int] | None = None  # (ETag, total): on a transient failure, resume later
    # Pieces as they came off the socket (`iter_chunks`: no join into a copy), held until
    # `chunk_bytes` of them go to the worker thread in one hand-off; a try cut short writes
    # what it holds before it keeps its `.part`, so the next try asks only for the rest.
    pieces: list[bytes] = []
    try:
        async with session.get(url, headers=headers, timeout=timeout) as resp:
            answer = await _check_answer(resp, offset, resume.total if resume else 0, policy)
            if answer is None:
                return None
            start, total = answer
            cap = policy.max_file_bytes
            speed = LowSpeed(policy.speed_limit, policy.speed_time)
            held = 0
            if not start and total and total <= policy.chunk_bytes:
                async for piece, _ in resp.content.iter_chunks():
                    speed.received(len(piece))
                    held += len(piece)
                    pieces.append(piece)
                _check_size(held, total)
                out, duration = await run(_PartFile.whole, pieces, part, target, inspect)
            else:
                out = await run(_PartFile, part, resume if start else None)
                etag = resp.headers.get("ETag", "") or (resume.etag if resume and start else "")
                if resume is not None and total and etag and not etag.startswith("W/"):
                    keep = etag, total
                async for piece, _ in resp.content.iter_chunks():
                    speed.received(len(piece))
                    if cap is not None and out.size + held + len(piece) > cap:
                        keep = None
                        raise DownloadError(f"over --max-file-bytes ({cap})")
                    pieces.append(piece)
                    held += len(piece)
                    if held >= policy.chunk_bytes:
                        await run(out.write, pieces)
                        pieces, held = [], 0
                if pieces:
                    await run(out.write, pieces)
                    pieces = []  # written: a failure from here on must not write them again
                _check_size(out.size, total or None)
                keep = None
                duration = await run(out.finish, target, inspect)
    except DownloadError as exc:
        await _give_up(part, out, resume, keep if exc.transient else None, pieces)
        raise
    except (aiohttp.ClientError, TimeoutError) as exc:
        await _give_up(part, out, resume, keep, pieces)
        raise _translate(exc, policy) from exc
    except ValueError as exc:
        await _give_up(part, out, resume, None)
        raise DownloadError(clip(str(exc), 200), code="BAD_AUDIO") from exc
    except OSError as exc:
        await _give_up(part, out, resume, None)
        raise DownloadError(f"cannot write: {exc.strerror or exc}") from exc
    except BaseException:
        await _give_up(part, out, resume, None)
        raise
    assert out is not None  # every path that gets here stored the body
    if resume is not None:
        resume.clear()
    return SavedFile(str(target), out.size, out.digest.hexdigest(), duration)


async def _check_answer(
    resp: aiohttp.ClientResponse, offset: int, known: int, policy: DownloadPolicy
) -> tuple[int, int] | None:
    """(where the body starts in the object, the object's size or 0 if unknown) when `resp` is
    a body to save; None when a ranged GET (from `offset` of an object of `known` bytes) must
    become a full one; DownloadError otherwise."""
    if offset and resp.status in (412, 416):  # the object changed (If-Match), or shrank
        return None
    if resp.status not in (200, 206) or (resp.status == 206 and not offset):
        body = await resp.content.read(2000)
        raise _refused(resp.status, resp.headers.get("Retry-After"), body)
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", ""):
        raise DownloadError(
            f"storage sent it encoded ({clip(encoding, 40)}) though only identity was accepted"
        )
    length = resp.content_length
    start, total = 0, length or 0
    if resp.status == 206:  # the rest of the object, from `offset`, if it says so
        found = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
        if found is None or int(found[1]) != offset or int(found[2]) + 1 != int(found[3]):
            return None
        start, total = offset, int(found[3])
        if total != known or (length is not None and length != total - offset):
            return None
    cap = policy.max_file_bytes
    if cap is not None and total > cap:
        raise DownloadError(f"{total} bytes is over --max-file-bytes ({cap})")
    return start, total


def _refused(status: int, retry_header: str | None, body: bytes) -> DownloadError:
    """The error for an HTTP status that is not a body to save."""
    reason = _refusal(status, body)
    if status == 429 or (status == 503 and b"SlowDown" in body):
        return Throttled(reason, retry_after(retry_header, time.time()))
    if status >= 500:
        return Unanswered(reason)
    return DownloadError(reason, expired=status == 403)


def _check_size(size: int, expected: int | None) -> None:
    if expected is not None and size != expected:
        raise Unanswered(f"got {size} of {expected} bytes")


async def _give_up(
    part: Path,
    out: _PartFile | None,
    resume: Resume | None,
    keep: tuple[str, int] | None,
    held: list[bytes] | None = None,
) -> None:
    """After a failed try: the `.part` kept in `resume` if `keep` (ETag, total) and it has
    bytes (the `held` pieces, received but not yet written, written first), else removed.
    Never raises: a failed cleanup is logged, the try's own error stands."""
    with anyio.CancelScope(shield=True):
        if keep is not None and out is not None and resume is not None:
            try:
                if held:
                    await anyio.to_thread.run_sync(out.write, held)
                await anyio.to_thread.run_sync(out.close)
            except OSError:
                pass
            else:
                if out.size:
                    resume.keep(part, keep[0], keep[1], out.size, out.digest)
                    return
        if resume is not None:
            resume.clear()
        await discard(part, out)


async def discard(part: Path, out: _PartFile | None = None) -> None:
    """Close and remove a `.part`, which may not exist. Never raises (see `_give_up`)."""
    with anyio.CancelScope(shield=True):
        try:
            if out is not None:
                await anyio.to_thread.run_sync(out.close)
        except OSError as exc:
            log.debug("closing a partial file failed", file=part.name, reason=exc.strerror)
        try:
            await anyio.to_thread.run_sync(partial(part.unlink, missing_ok=True))
        except OSError as exc:
            log.warning("cannot remove a partial file", file=str(part), reason=exc.strerror)
