"""How one file's tries are spent (`JobDownload._save_one` on `retry.Retrying`): attempts per
file, backoff within the policy, fresh links at once, Retry-After as the floor, and refused
credentials on fresh links stopping the run. Every wait is on a FakeClock."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import anyio
import pytest
import structlog
from helpers import FakeClock
from hostile_storage import HostileStorage, serve, throttle

from watcher._config import DownloadPolicy
from watcher._download import Finished, JobDownload, download_worker
from watcher._engine import storage_session
from watcher._errors import ApiError, AuthError, DownloadError
from watcher._inputs import Job
from watcher._manifest import JobResult, SavedFile
from watcher._outage import Outage
from watcher._parse import JobStatus
from watcher._retry import RetryPolicy
from watcher._schedule import Watched

BODY = b"0123456789" * 1000
RETRY = RetryPolicy(attempts=4, base=0.5, cap=1.5)
POLICY = DownloadPolicy(workers=1, speed_time=2.0, connect_timeout=2.0, retry=RETRY)
REFUSED = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"


@pytest.fixture
async def storage() -> AsyncIterator[HostileStorage]:
    """A hostile storage server on 127.0.0.1:0, routes set by each test."""
    async with HostileStorage() as server:
        yield server


class Refresher:
    """A `refresh` that answers with `links` (or raises `error`), counting its calls."""

    def __init__(self, links: dict[str, str], error: Exception | None = None) -> None:
        self.links, self.error, self.calls = links, error, 0

    async def __call__(self, job_id: str) -> JobStatus:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return JobStatus("SUCCEED", self.links)


def downloader(
    session: aiohttp.ClientSession, out: Path, clock: FakeClock, refresh: Refresher
) -> JobDownload:
    """A JobDownload into `out` whose backoff and storage outage run on `clock`."""
    outage = Outage("storage", timeout=60.0, clock=clock, sleep=clock.sleep, rng=random.Random(1))
    return JobDownload(
        session, refresh, out, POLICY, random.Random(7), outage=outage, sleep=clock.sleep
    )


async def _save(download: JobDownload, **links: str) -> dict[str, SavedFile]:
    with anyio.fail_after(20):
        return await download.save(Job("j1"), links, time.time())


@pytest.mark.anyio
async def test_a_file_that_keeps_failing_gets_exactly_its_attempts(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """A file answered 500 every time is tried `attempts` times, with a backoff below each
    ceiling (base, 2 x base, capped) between them, then is the job's DownloadError."""
    url = storage.route("/a.bin", serve(b"busy", status=500))
    clock = FakeClock()
    async with storage_session(POLICY) as session:
        download = downloader(session, tmp_path, clock, Refresher({}))
        with pytest.raises(DownloadError, match="500"):
            await _save(download, info=url)
    assert len(storage.seen) == RETRY.attempts
    assert len(clock.slept) == RETRY.attempts - 1
    for n, delay in enumerate(clock.slept, 1):
        assert 0 <= delay <= min(RETRY.cap, RETRY.base * 2 ** (n - 1))
    assert download.retries == {"download": RETRY.attempts - 1}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_the_backoff_is_the_policys_own_draws(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """The delays are RetryPolicy.backoff's with the download's rng: nothing else decides."""
    url = storage.route("/a.bin", serve(b"", status=503), serve(b"", status=502), serve(BODY))
    clock = FakeClock()
    async with storage_session(POLICY) as session:
        download = downloader(session, tmp_path, clock, Refresher({}))
        saved = await _save(download, info=url)
    assert "info" in saved
    rng = random.Random(7)
    assert clock.slept == [RETRY.backoff(1, rng), RETRY.backoff(2, rng)]


@pytest.mark.anyio
async def test_a_permanent_error_is_not_tried_again(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """A 404 is the file's error at once: one request, no wait, no retry counted."""
    url = storage.route("/a.bin", serve(b"<Error><Code>NoSuchKey</Code></Error>", status=404))
    clock = FakeClock()
    async with storage_session(POLICY) as session:
        download = downloader(session, tmp_path, clock, Refresher({}))
        with pytest.raises(DownloadError, match="NoSuchKey"):
            await _save(download, info=url)
    assert len(storage.seen) == 1 and clock.slept == [] and not download.retries


@pytest.mark.anyio
async def test_a_refused_link_is_replaced_at_once(storage: HostileStorage, tmp_path: Path) -> None:
    """A 403 brings fresh links and the next try without any wait; both retries are counted."""
    old = storage.route("/old.bin", serve(REFUSED, status=403))
    new = storage.route("/new.bin", serve(BODY))
    clock = FakeClock()
    refresh = Refresher({"info": new})
    async with storage_session(POLICY) as session:
        download = downloader(session, tmp_path, clock, refresh)
        saved = await _save(download, info=old)
    assert "info" in saved and refresh.calls == 1
    assert clock.slept == []
    assert download.retries == {"download": 1, "fresh links": 1}
    assert [r.path for r in storage.seen] == ["/old.bin", "/new.bin"]


@pytest.mark.anyio
async def test_refused_links_still_spend_the_files_attempts(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """Links refused every time, fresh or not, end after `attempts` tries: no endless loop."""
    url = storage.route("/a.bin", serve(REFUSED, status=403))
    clock = FakeClock()
    refresh = Refresher({"info": url})
    async with storage_session(POLICY) as session:
        download = downloader(session, tmp_path, clock, refresh)
        with pytest.raises(DownloadError):
            await _save(download, info=url)
    assert len(storage.seen) == RETRY.attempts and refresh.calls == RETRY.attempts - 1
    assert clock.slept == []


@pytest.mark.anyio
async def test_retry_after_is_the_floor_of_the_wait(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """A 429 asking for 5 s is waited out for 5 s, though the backoff's cap is 1.5 s."""
    url = storage.route("/a.bin", throttle(429, "5"), serve(BODY))
    clock = FakeClock()
    async with storage_session(POLICY) as session:
        download = downloader(session, tmp_path, clock, Refresher({}))
        with structlog.testing.capture_logs() as logs:
            await _save(download, info=url)
    assert clock.slept == [5.0]
    [retry] = [e for e in logs if e["event"] == "download failed, will retry"]
    assert (retry["attempt"], retry["delay_s"], retry["file"]) == (1, 5.0, "info")


@pytest.mark.anyio
async def test_a_failed_refresh_is_the_files_transient_error(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """Fresh links that cannot be had (a 500) are a transient DownloadError of that file, and
    each failed refresh waits its backoff before the next (only the 403 itself goes at once)."""
    url = storage.route("/a.bin", serve(REFUSED, status=403))
    refresh = Refresher({}, ApiError(500, "MSS.1", "internal", "r1"))
    clock = FakeClock()
    started = clock()
    async with storage_session(POLICY) as session:
        download = downloader(session, tmp_path, clock, refresh)
        with pytest.raises(DownloadError, match=r"fresh links: .*internal") as caught:
            await _save(download, info=url)
    assert caught.value.transient and refresh.calls == RETRY.attempts - 1
    rng = random.Random(7)
    rng.uniform(0.0, 1.0)  # the 403's own draw (its wait is none)
    waits = [RETRY.delay(n, rng) for n in range(2, RETRY.attempts)]
    assert clock() - started == pytest.approx(sum(waits))


@pytest.mark.anyio
async def test_credentials_refused_for_good_on_fresh_links_stop_the_run(
    storage: HostileStorage, tmp_path: Path
) -> None:
    """A fatal AuthError from fresh links leaves the worker as itself: no ERROR line for that
    job or the ones after it (they stay unwritten for the next run), as the pollers do."""
    url = storage.route("/a.bin", serve(REFUSED, status=403))
    refresh = Refresher({}, AuthError(401, "APIGW.0301", "Incorrect IAM authentication", "r"))
    jobs_tx, jobs_rx = anyio.create_memory_object_stream[Finished](4)
    results_tx, results_rx = anyio.create_memory_object_stream[JobResult](4)
    now = datetime.now(UTC)
    async with storage_session(POLICY) as session:
        download = downloader(session, tmp_path, FakeClock(), refresh)
        async with jobs_tx, results_rx:
            for job_id in ("j1", "j2"):
                status = JobStatus("SUCCEED", {"info": url})
                await jobs_tx.send(Finished(Watched(Job(job_id), 0.0).snapshot(0.0, now), status))
            jobs_tx.close()
            with anyio.fail_after(20), pytest.raises(AuthError, match="IAM"):
                await download_worker(download, jobs_rx, results_tx)
            assert [r async for r in results_rx] == []
    assert refresh.calls == 1
