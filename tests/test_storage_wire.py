"""Downloads against a hostile storage server (tests/hostile_storage.py): stalls, drips, lying
Content-Lengths, gzip unasked, throttling, bad redirects, endless bodies, resumes, outages."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import random
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
import structlog
from helpers import (
    FAST_DOWNLOADS,
    TEST_AK,
    TEST_PROJECT_ID,
    TEST_SK,
    FakeClock,
    SimFactory,
    make_jobs,
    read_manifest,
    run_config,
)
from hostile_storage import (
    Behaviour,
    HostileStorage,
    Request,
    endless,
    gzipped,
    head,
    paced,
    ranged,
    redirect,
    reset,
    serve,
    silent,
    stall_after_headers,
    throttle,
)

from watcher import _transfer, cli
from watcher._commands import run as run_command
from watcher._config import DownloadPolicy
from watcher._download import Finished, JobDownload, download_worker
from watcher._engine import Hooks, storage_session, watch
from watcher._errors import ApiError, DownloadError, OutageError
from watcher._inputs import Job
from watcher._manifest import JobResult
from watcher._outage import Outage
from watcher._parse import JobStatus
from watcher._progress import Snapshot
from watcher._retry import RetryPolicy
from watcher._schedule import Watched
from watcher._transfer import fetch_file
from watcher.sim.faults import FaultPlan

BODY = bytes(range(256)) * 1200  # 307,200 bytes: streamed in 4 KiB chunks


def policy(**changes: Any) -> DownloadPolicy:
    """A test policy: 4 KiB chunks, a 0.3 s speed time, three quick tries per file."""
    base = DownloadPolicy(
        workers=1,
        chunk_bytes=4096,
        speed_limit=1024,
        speed_time=0.3,
        connect_timeout=2,
        retry=RetryPolicy(attempts=3, base=0.01, cap=0.02),
    )
    return replace(base, **changes)


def wav(seconds: float, rate: int = 16000) -> bytes:
    """A mono 16-bit WAV of `seconds` of silence."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return buffer.getvalue()


@pytest.fixture
async def storage() -> AsyncIterator[HostileStorage]:
    """A hostile storage server on 127.0.0.1:0, routes set by each test."""
    async with HostileStorage() as server:
        yield server


async def _no_refresh(job_id: str) -> JobStatus:
    raise AssertionError("no fresh links expected")


def downloader(
    session: aiohttp.ClientSession, out: Path, clock: FakeClock, **changes: Any
) -> JobDownload:
    """A JobDownload whose backoff and storage outage run on `clock`."""
    outage = Outage("storage", timeout=60.0, clock=clock, sleep=clock.sleep, rng=random.Random(1))
    return JobDownload(
        session,
        _no_refresh,
        out,
        policy(**changes),
        random.Random(1),
        outage=outage,
        sleep=clock.sleep,
    )


async def _save(download: JobDownload, job_id: str, **links: str) -> dict[str, Any]:
    return await download.save(Job(job_id), links, time.time())


# --- stalls, drips and slow transfers ----------------------------------------------------------


@pytest.mark.anyio
async def test_a_connection_that_stalls_after_its_headers_is_abandoned(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """Headers, then silence: the try is given up after about --speed-time, as transient."""
    url = storage.route("/a.wav", stall_after_headers())
    async with storage_session(policy()) as session:
        with anyio.fail_after(5), pytest.raises(DownloadError) as caught:
            await fetch_file(session, url, tmp_path / "a.wav", policy())
    assert caught.value.transient and "no data for 0.3 s" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_a_server_that_never_answers_is_abandoned(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """A request met with silence (no status line) is given up after about --speed-time."""
    url = storage.route("/a.wav", silent())
    async with storage_session(policy()) as session:
        with anyio.fail_after(5), pytest.raises(DownloadError) as caught:
            await fetch_file(session, url, tmp_path / "a.wav", policy())
    assert caught.value.transient and "no data for 0.3 s" in str(caught.value)


@pytest.mark.anyio
async def test_a_drip_of_bytes_is_abandoned(storage: HostileStorage, tmp_path: Path) -> None:
    """A byte every 20 ms (under 1 KiB/s) never trips a read timeout, but the speed limit."""
    url = storage.route("/a.wav", paced(BODY, 1, 0.02))
    async with storage_session(policy()) as session:
        with anyio.fail_after(5), pytest.raises(DownloadError) as caught:
            await fetch_file(session, url, tmp_path / "a.wav", policy())
    assert caught.value.transient and "too slow" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_a_slow_transfer_that_keeps_moving_runs_to_its_end(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """A transfer lasting several --speed-time windows, above --speed-limit, is saved whole."""
    body = BODY[: 32 * 4096]
    url = storage.route("/a.bin", paced(body, 4096, 0.04))  # 32 chunks over 1.3 s, 100 KB/s
    async with storage_session(policy()) as session:
        with anyio.fail_after(10):
            saved = await fetch_file(session, url, tmp_path / "a.bin", policy(speed_time=0.4))
    assert (tmp_path / "a.bin").read_bytes() == body and saved.bytes == len(body)


@pytest.mark.anyio
async def test_a_body_in_many_pieces_reaches_the_disk_chunk_bytes_at_a_time(
    storage: HostileStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """256 KiB arriving 16 KiB at a time goes to the worker thread in batches of at least
    chunk_bytes (64 KiB), not one hand-off per piece, and the file is exact."""
    body = BODY[: 256 * 1024]
    chunk = 64 * 1024
    batches: list[int] = []
    write = _transfer._PartFile.write

    def counting(self: Any, pieces: list[bytes]) -> None:
        batches.append(sum(len(piece) for piece in pieces))
        write(self, pieces)

    monkeypatch.setattr(_transfer._PartFile, "write", counting)
    url = storage.route("/a.bin", paced(body, 16 * 1024, 0.001))
    async with storage_session(policy(chunk_bytes=chunk)) as session:
        with anyio.fail_after(10):
            saved = await fetch_file(session, url, tmp_path / "a.bin", policy(chunk_bytes=chunk))
    assert (tmp_path / "a.bin").read_bytes() == body
    assert saved.sha256 == hashlib.sha256(body).hexdigest()
    assert sum(batches) == len(body) and len(batches) <= len(body) // chunk + 1
    assert all(size >= chunk for size in batches[:-1])


# --- exact bytes --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_truncated_wav_with_a_matching_short_content_length_is_bad_audio(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """A 1.535 s WAV served as its first 0.38 s (Content-Length agreeing): BAD_AUDIO, no file."""
    whole = wav(1.535)
    url = storage.route("/a.wav", serve(whole[: 44 + int(0.38 * 32000)]))
    async with storage_session(policy()) as session:
        download = downloader(session, tmp_path, FakeClock())
        with pytest.raises(DownloadError) as caught:
            await _save(download, "j1", audio=url)
    assert caught.value.code == "BAD_AUDIO" and "claims" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_a_body_longer_than_its_content_length_is_an_error(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """Bytes beyond Content-Length (in one write, as a lying server sends them): not saved."""
    url = storage.route("/a.srt", serve(b"1\n00:00 --> 00:01\nhi\n" * 60, length=500))
    async with storage_session(policy()) as session:
        with pytest.raises(DownloadError):
            await fetch_file(session, url, tmp_path / "a.srt", policy())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_a_body_shorter_than_its_content_length_is_a_transient_error(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """Content-Length 500 bytes more than sent, then a close: transient, nothing kept."""
    url = storage.route("/a.bin", serve(BODY, length=len(BODY) + 500))
    async with storage_session(policy()) as session:
        with pytest.raises(DownloadError) as caught:
            await fetch_file(session, url, tmp_path / "a.bin", policy())
    assert caught.value.transient
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_gzip_is_not_asked_for_and_refused_when_sent(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """The request says `Accept-Encoding: identity`; a gzipped answer is an error, not saved."""
    url = storage.route("/a.srt", gzipped(b"1\n00:00:00,000 --> 00:00:01,000\nhello\n" * 10))
    async with storage_session(policy()) as session:
        with pytest.raises(DownloadError, match="encoded"):
            await fetch_file(session, url, tmp_path / "a.srt", policy())
    assert storage.seen[0].headers["accept-encoding"] == "identity"
    assert list(tmp_path.iterdir()) == []


# --- throttling and permanent errors -----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "header", "low", "high"),
    [
        (429, "7", 7.0, 7.0),
        (429, "3600", 60.0, 60.0),  # capped
        (429, "HTTPDATE+20", 15.0, 20.0),
        (503, None, 0.0, 0.02),  # SlowDown without a hint: the usual backoff
        (429, "²", 0.0, 0.02),  # not ASCII digits: ignored
    ],
)
async def test_storage_throttling_is_retried_after_its_retry_after(
    storage: HostileStorage,
    tmp_path: Path,
    status: int,
    header: str | None,
    low: float,
    high: float,
) -> None:
    """429 / 503 SlowDown are retried, waiting Retry-After (seconds or HTTP-date, at most 60 s)."""
    if header == "HTTPDATE+20":
        header = format_datetime(datetime.fromtimestamp(time.time() + 20, UTC), usegmt=True)
    url = storage.route("/a.bin", throttle(status, header), serve(BODY))
    clock = FakeClock()
    async with storage_session(policy()) as session:
        saved = await _save(downloader(session, tmp_path, clock), "j1", info=url)
    assert saved["info"].bytes == len(BODY)
    [delay] = clock.slept
    assert low <= delay <= high


@pytest.mark.anyio
async def test_a_redirect_to_a_file_link_is_permanent(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """A redirect to file:// is refused once, not retried."""
    url = storage.route("/a.wav", redirect("file:///etc/passwd"))
    async with storage_session(policy()) as session:
        with pytest.raises(DownloadError, match="not http") as caught:
            await _save(downloader(session, tmp_path, FakeClock()), "j1", audio=url)
    assert not caught.value.transient
    assert len(storage.seen) == 1


@pytest.mark.anyio
async def test_a_redirect_loop_is_permanent(storage: HostileStorage, tmp_path: Path) -> None:
    """A link redirecting to itself ends after one round of redirects, not one per try."""
    url = storage.route("/loop.wav", redirect("/loop.wav"))
    async with storage_session(policy()) as session:
        with pytest.raises(DownloadError, match="too many redirects") as caught:
            await _save(downloader(session, tmp_path, FakeClock()), "j1", audio=url)
    assert not caught.value.transient
    assert len(storage.seen) <= 11


# --- bounds -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_endless_body_stops_at_the_cap(storage: HostileStorage, tmp_path: Path) -> None:
    """No Content-Length and no end: stopped at --max-file-bytes, nothing left on disk."""
    url = storage.route("/a.bin", endless())
    async with storage_session(policy()) as session:
        with anyio.fail_after(10), pytest.raises(DownloadError, match="max-file-bytes"):
            await fetch_file(session, url, tmp_path / "a.bin", policy(max_file_bytes=300_000))
    assert list(tmp_path.iterdir()) == []


def test_downloads_are_capped_by_default() -> None:
    """Without --max-file-bytes a file over 4 GiB is refused: no body can fill the disk."""
    assert DownloadPolicy().max_file_bytes == 4 * 1024**3


@pytest.mark.anyio
async def test_a_huge_error_body_makes_a_short_message(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """A 500 whose XML message is 1,900 bytes long: the error (and so the manifest) stays short."""
    xml = b"<Error><Code>InternalError</Code><Message>" + b"x" * 1900 + b"</Message></Error>"
    url = storage.route("/a.bin", serve(xml, status=500))
    async with storage_session(policy()) as session:
        with pytest.raises(DownloadError) as caught:
            await _save(downloader(session, tmp_path, FakeClock()), "j1", info=url)
    assert len(str(caught.value)) <= 300
    assert str(caught.value).startswith("j1.info.json: HTTP 500 InternalError: xxx")


@pytest.mark.anyio
async def test_a_huge_error_from_fresh_links_makes_a_short_manifest_message(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """An expired link whose refresh fails with a 100 KB message: the ERROR line is short."""
    url = storage.route("/a.bin", serve(b"<Error><Code>AccessDenied</Code></Error>", status=403))

    async def refresh(job_id: str) -> JobStatus:
        raise ApiError(400, "MSS.00000001", "y" * 100_000, "req-1")

    jobs_tx, jobs_rx = anyio.create_memory_object_stream[Finished](1)
    results_tx, results_rx = anyio.create_memory_object_stream[JobResult](1)
    async with storage_session(policy()) as session:
        download = downloader(session, tmp_path, FakeClock())
        download.refresh = refresh
        async with jobs_tx, results_rx:
            status = JobStatus("SUCCEED", {"info": url}, request_id="req-1")
            await jobs_tx.send(
                Finished(Watched(Job("j1"), 0.0).snapshot(0.0, datetime.now(UTC)), status)
            )
            jobs_tx.close()
            with anyio.fail_after(10):
                await download_worker(download, jobs_rx, results_tx)
            [result] = [r async for r in results_rx]
    assert result.error is not None and len(result.error.message) <= 300
    assert "MSS.00000001" in result.error.message


@pytest.mark.anyio
async def test_an_unparseable_link_is_the_jobs_error_not_a_crash(tmp_path: Path) -> None:
    """A link the URL parser refuses: DownloadError for that file, its text not quoted."""
    async with storage_session(policy()) as session:
        download = downloader(session, tmp_path, FakeClock())
        with pytest.raises(DownloadError, match="not a usable URL") as caught:
            await _save(download, "j1", audio="http://[::1/x.wav?Signature=SECRET")
    assert "SECRET" not in str(caught.value)


# --- resuming -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_interrupted_download_resumes_with_a_ranged_get(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """Cut at 100 KB: the next try asks `Range: bytes=N-` on the ETag; the whole file's hash."""
    url = storage.route("/a.bin", ranged(BODY, '"v1"', cut_at=100_000), ranged(BODY, '"v1"'))
    async with storage_session(policy()) as session:
        saved = await _save(downloader(session, tmp_path, FakeClock()), "j1", info=url)
    first, second = storage.seen
    kept = int(second.headers["range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < kept <= 100_000 and second.headers["if-match"] == '"v1"'
    assert "range" not in first.headers
    assert (tmp_path / "j1.info.json").read_bytes() == BODY
    assert saved["info"].sha256 == hashlib.sha256(BODY).hexdigest()
    assert saved["info"].bytes == len(BODY)
    assert list(tmp_path.iterdir()) == [tmp_path / "j1.info.json"]


def _dripped_then_cut(body: bytes, etag: str, piece: int, cut_at: int) -> Behaviour:
    """A 200 with an ETag announcing all of `body`, sent `piece` bytes every 5 ms until `cut_at`,
    then closed: each piece reaches the client before the cut does."""

    async def behave(req: Request, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(head(200, {"ETag": etag, "Accept-Ranges": "bytes"}, len(body)))
        for start in range(0, cut_at, piece):
            w.write(body[start : min(start + piece, cut_at)])
            await w.drain()
            await asyncio.sleep(0.005)

    return behave


@pytest.mark.anyio
async def test_a_try_cut_short_writes_what_it_held_and_resumes_from_there(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """Cut at 100,000 bytes, all held for a 1 MiB hand-off: what was read is written before the
    `.part` is kept, so the next try asks only for the rest; the file and its hash are whole."""
    body = bytes(range(256)) * 8192  # 2 MiB: over chunk_bytes, so streamed
    url = storage.route(
        "/a.bin", _dripped_then_cut(body, '"v1"', 10_000, 100_000), ranged(body, '"v1"')
    )
    async with storage_session(policy(chunk_bytes=1 << 20)) as session:
        download = downloader(session, tmp_path, FakeClock(), chunk_bytes=1 << 20)
        with anyio.fail_after(10):
            saved = await _save(download, "j1", info=url)
    first, second = storage.seen
    kept = int(second.headers["range"].removeprefix("bytes=").removesuffix("-"))
    assert "range" not in first.headers and 90_000 <= kept <= 100_000  # the last piece may be lost
    assert (tmp_path / "j1.info.json").read_bytes() == body
    assert saved["info"].sha256 == hashlib.sha256(body).hexdigest()


@pytest.mark.anyio
async def test_a_server_that_ignores_range_gives_the_whole_file(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """A 200 to a ranged GET is the whole object: written from byte 0, not appended."""
    url = storage.route(
        "/a.bin", ranged(BODY, '"v1"', cut_at=100_000), ranged(BODY, '"v1"', ignore_range=True)
    )
    async with storage_session(policy()) as session:
        saved = await _save(downloader(session, tmp_path, FakeClock()), "j1", info=url)
    assert "range" in storage.seen[1].headers
    assert (tmp_path / "j1.info.json").read_bytes() == BODY
    assert saved["info"].sha256 == hashlib.sha256(BODY).hexdigest()


@pytest.mark.anyio
@pytest.mark.parametrize("wrong", ["wrong_range", "wrong_total"])
async def test_a_206_from_the_wrong_offset_is_not_appended(
    storage: HostileStorage, tmp_path: Path, wrong: str
) -> None:
    """A 206 from another offset, or naming another total, is not appended: a full GET follows."""
    url = storage.route(
        "/a.bin",
        ranged(BODY, '"v1"', cut_at=100_000),
        ranged(BODY, '"v1"', **{wrong: True}),
        ranged(BODY, '"v1"'),
    )
    async with storage_session(policy()) as session:
        saved = await _save(downloader(session, tmp_path, FakeClock()), "j1", info=url)
    assert [("range" in r.headers) for r in storage.seen] == [False, True, False]
    assert (tmp_path / "j1.info.json").read_bytes() == BODY
    assert saved["info"].sha256 == hashlib.sha256(BODY).hexdigest()


@pytest.mark.anyio
async def test_an_object_that_changed_is_fetched_again_from_byte_0(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """412 to If-Match (a new ETag): a full GET follows, and the file is the new object."""
    new = bytes(reversed(BODY))
    url = storage.route("/a.bin", ranged(BODY, '"v1"', cut_at=100_000), ranged(new, '"v2"'))
    async with storage_session(policy()) as session:
        saved = await _save(downloader(session, tmp_path, FakeClock()), "j1", info=url)
    assert [("range" in r.headers) for r in storage.seen] == [False, True, False]
    assert (tmp_path / "j1.info.json").read_bytes() == new
    assert saved["info"].sha256 == hashlib.sha256(new).hexdigest()


# --- disks that refuse ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_read_only_disk_is_the_files_error_and_cleanup_never_raises(
    storage: HostileStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EROFS opening the .part and again unlinking it: a DownloadError naming the OS's reason."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "open", refuse)
    monkeypatch.setattr(Path, "unlink", refuse)
    url = storage.route("/a.bin", serve(BODY))
    async with storage_session(policy()) as session:
        with pytest.raises(DownloadError, match="Read-only file system") as caught:
            await fetch_file(session, url, tmp_path / "a.bin", policy())
    assert not caught.value.transient


# --- outages ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_storage_outage_pauses_downloads_instead_of_failing_them(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """Files reset 7 times each (over their 5 tries) are all saved: the outage is not charged."""
    urls = [storage.route(f"/{n}.bin", *[reset()] * 7, serve(BODY)) for n in "abc"]
    clock = FakeClock()
    saved: dict[str, int] = {}
    async with storage_session(policy()) as session:
        download = downloader(
            session, tmp_path, clock, retry=RetryPolicy(attempts=5, base=0.01, cap=0.02)
        )
        download.storage.timeout = 900.0

        async def one(n: int) -> None:
            files = await _save(download, f"j{n}", info=urls[n])
            saved[f"j{n}"] = files["info"].bytes

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for n in range(3):
                    tg.start_soon(one, n)
    assert saved == {"j0": len(BODY), "j1": len(BODY), "j2": len(BODY)}
    assert not download.storage.down


@pytest.mark.anyio
async def test_storage_down_past_the_outage_timeout_stops_the_run(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """Storage that never answers: OutageError after the timeout, not an ERROR per file. (Each
    file may try 20 times: with 3, one file could use up its tries before the other two had
    failed once, as on a loaded machine, and end as that job's ERROR.)"""
    urls = [storage.route(f"/{n}.bin", reset()) for n in "abc"]
    clock = FakeClock()
    tries = RetryPolicy(attempts=20, base=0.01, cap=0.02)
    async with storage_session(policy()) as session:
        download = downloader(session, tmp_path, clock, retry=tries)

        async def all_three() -> None:
            async with anyio.create_task_group() as tg:
                for n in range(3):
                    tg.start_soon(partial(_save, download, f"j{n}", info=urls[n]))

        with anyio.fail_after(10), pytest.raises(ExceptionGroup) as caught:
            await all_three()
    assert caught.group_contains(OutageError)
    assert not caught.group_contains(DownloadError)
    assert len(storage.seen) < 200


# --- logs ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_download_events_are_logged_with_job_file_and_reason(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """A retry names job, file and reason; a job not saved is a warning; a saved job, debug."""
    good = storage.route("/good.bin", serve(b"", status=500), serve(BODY))
    bad = storage.route("/bad.bin", serve(b"<Error><Code>NoSuchKey</Code></Error>", status=404))
    clock = FakeClock()
    jobs_tx, jobs_rx = anyio.create_memory_object_stream[Finished](4)
    results_tx, results_rx = anyio.create_memory_object_stream[JobResult](4)
    async with storage_session(policy()) as session:
        download = downloader(session, tmp_path, clock, kinds=frozenset({"info"}))
        now = datetime.now(UTC)
        with structlog.testing.capture_logs() as logs, anyio.fail_after(10):
            async with jobs_tx, results_rx:
                for job_id, url in (("j1", good), ("j2", bad)):
                    status = JobStatus("SUCCEED", {"info": url})
                    await jobs_tx.send(
                        Finished(Watched(Job(job_id), 0.0).snapshot(0.0, now), status)
                    )
                jobs_tx.close()
                await download_worker(download, jobs_rx, results_tx)
                results = [r.status async for r in results_rx]
    assert results == ["SUCCEED", "ERROR"]
    retry = next(e for e in logs if e["event"] == "download failed, will retry")
    assert (retry["job_id"], retry["file"]) == ("j1", "info") and retry["reason"]
    [not_saved] = [e for e in logs if e["event"] == "job not saved"]
    assert not_saved["log_level"] == "warning" and not_saved["job_id"] == "j2"
    assert "NoSuchKey" in not_saved["reason"]
    [saved] = [e for e in logs if e["event"] == "job saved"]
    assert saved["log_level"] == "debug" and saved["job_id"] == "j1"


def test_a_storage_outage_past_its_timeout_exits_3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """OutageError from the run is exit 3 with its message, no traceback."""

    async def down(*args: Any, **kwargs: Any) -> None:
        raise OutageError("storage", 0.0, "storage has been unreachable since 00:00 UTC")

    monkeypatch.setattr(run_command, "watch", down)  # the `watcher run` command calls it
    for name, value in (
        ("HUAWEICLOUD_SDK_AK", TEST_AK),
        ("HUAWEICLOUD_SDK_SK", TEST_SK),
        ("HUAWEICLOUD_SDK_PROJECT_ID", TEST_PROJECT_ID),
        ("HOME", str(tmp_path)),
    ):
        monkeypatch.setenv(name, value)
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("job-1\n")
    code = cli.main(["run", str(jobs), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 3
    err = capsys.readouterr().err
    assert "storage has been unreachable" in err and "Traceback" not in err


@pytest.mark.anyio
async def test_a_run_whose_storage_never_answers_stops_with_an_outage(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Downloads all cut short: progress shows storage down, then OutageError, no ERROR lines."""
    jobs = make_jobs(6)
    sim = sim_factory(jobs, faults=FaultPlan(short_download=1.0))
    config = run_config(sim.url, tmp_path, download=replace(FAST_DOWNLOADS, outage_timeout=0.5))
    snapshots: list[Snapshot] = []
    hooks = Hooks(on_progress=snapshots.append, progress_interval=0.05)

    async def items() -> AsyncIterator[Job]:
        for job in jobs:
            yield job

    with anyio.fail_after(20), pytest.raises(OutageError, match="storage"):
        await watch(config, items(), hooks=hooks)
    assert [line for line in read_manifest(tmp_path) if line["status"] == "ERROR"] == []
    shown = [s.outage for s in snapshots if s.outage]
    assert shown and shown[0].startswith("storage unreachable since")
