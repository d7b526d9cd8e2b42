"""Saving result files: verified, renamed into place, never left partial."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from helpers import TEST_AK, TEST_PROJECT_ID, TEST_SK, FakeClock

from watcher._config import DownloadPolicy
from watcher._download import file_name
from watcher._engine import storage_session
from watcher._errors import DownloadError
from watcher._transfer import LowSpeed, Unanswered, clip, fetch_file, retry_after
from watcher.cli import build_config, build_parser

BODY = bytes(range(256)) * 1000
POLICY = DownloadPolicy(workers=1, speed_time=5, chunk_bytes=4096)


async def _full(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="audio/wav")


async def _short(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Length": str(len(BODY))})
    await response.prepare(request)
    await response.write(BODY[:1000])  # then the connection closes early
    request.transport.close()  # type: ignore[union-attr]
    return response


async def _expired(request: web.Request) -> web.Response:
    xml = (
        "<?xml version='1.0'?><Error><Code>AccessDenied</Code>"
        "<Message>Request has expired</Message></Error>"
    )
    return web.Response(status=403, text=xml, content_type="application/xml")


SEEN: list[dict[str, str]] = []


async def _redirect(request: web.Request) -> web.Response:
    SEEN.append(dict(request.headers))
    raise web.HTTPFound("/landing.wav")


async def _landing(request: web.Request) -> web.Response:
    SEEN.append(dict(request.headers))
    return web.Response(body=BODY, content_type="audio/wav")


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """A tiny storage stand-in on 127.0.0.1:0 with a good, a short and an expired file."""
    app = web.Application()
    app.router.add_get("/redirect.wav", _redirect)
    app.router.add_get("/landing.wav", _landing)
    app.router.add_get("/full.wav", _full)
    app.router.add_get("/short.wav", _short)
    app.router.add_get("/expired.wav", _expired)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.anyio
async def test_complete_file_is_saved_with_its_digest(server: str, tmp_path: Path) -> None:
    """A full body lands under its final name with the right size and sha256."""
    async with aiohttp.ClientSession() as session:
        saved = await fetch_file(session, f"{server}/full.wav", tmp_path / "a.wav", POLICY)
    assert (tmp_path / "a.wav").read_bytes() == BODY
    assert (saved.bytes, saved.sha256) == (len(BODY), hashlib.sha256(BODY).hexdigest())
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]


@pytest.mark.anyio
async def test_short_body_leaves_nothing_behind(server: str, tmp_path: Path) -> None:
    """A body shorter than its Content-Length is a transient error; no file, no .part remains."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        with pytest.raises(DownloadError) as caught:
            await fetch_file(session, f"{server}/short.wav", tmp_path / "b.wav", POLICY)
    assert caught.value.transient
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_expired_link_says_so(server: str, tmp_path: Path) -> None:
    """A 403 from storage is an `expired` error quoting the storage's code and message."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DownloadError) as caught:
            await fetch_file(session, f"{server}/expired.wav", tmp_path / "c.wav", POLICY)
    assert caught.value.expired and not caught.value.transient
    assert "AccessDenied: Request has expired" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_an_unusable_link_is_refused_without_quoting_it(tmp_path: Path) -> None:
    """A link aiohttp cannot parse is an error whose message leaves its signature out."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DownloadError) as caught:
            await fetch_file(session, "http://[::1/x?Signature=SECRET", tmp_path / "u.wav", POLICY)
    assert "SECRET" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_only_http_links_are_fetched(tmp_path: Path) -> None:
    """A file:// link is refused before any I/O."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DownloadError, match="not http"):
            await fetch_file(session, "file:///etc/passwd", tmp_path / "d.wav", POLICY)


def test_file_names_follow_the_kind_and_audio_extension() -> None:
    """Audio keeps a .wav/.mp3 extension from its link; other kinds get fixed suffixes."""
    assert file_name("j1", "audio", "https://obs/x/j1.MP3?sig=1") == "j1.mp3"
    assert file_name("j1", "audio", "https://obs/x/j1.bin") == "j1.wav"
    assert file_name("j1", "srt", "https://obs/x/whatever") == "j1.srt"
    assert file_name("j1", "info", "https://obs/x/j1.timestamps.json") == "j1.info.json"


@pytest.mark.anyio
async def test_redirects_are_followed_without_credentials(server: str, tmp_path: Path) -> None:
    """The download session carries no API credentials, before or after a redirect."""
    SEEN.clear()
    async with storage_session(POLICY) as session:
        saved = await fetch_file(session, f"{server}/redirect.wav", tmp_path / "r.wav", POLICY)
    assert saved.bytes == len(BODY) and len(SEEN) == 2
    forbidden = {"authorization", "x-auth-token", "x-security-token", "x-sdk-date", "x-project-id"}
    assert all(not forbidden & {h.lower() for h in headers} for headers in SEEN)


def test_a_slow_but_moving_transfer_passes_the_speed_check() -> None:
    """40 MB at 120 KB/s (333 s, past the old 300 s total timeout) is never abandoned."""
    clock = FakeClock(0.0)
    speed = LowSpeed(1024, 30.0, clock)
    chunk = 64 * 1024
    for _ in range(40_000_000 // chunk):
        clock.now += chunk / 120_000
        speed.received(chunk)
    assert clock.now > 300


def test_a_drip_fails_the_speed_check_within_the_speed_time() -> None:
    """A byte a second is abandoned at the first chunk after 30 s."""
    clock = FakeClock(0.0)
    speed = LowSpeed(1024, 30.0, clock)

    def drip() -> None:
        for _ in range(100):
            clock.now += 1.0
            speed.received(1)

    with pytest.raises(Unanswered, match="too slow"):
        drip()
    assert 30.0 <= clock.now <= 31.0


def test_a_burst_after_a_slow_window_is_judged_window_by_window() -> None:
    """Each window stands alone: a fast first window does not excuse a dead second one."""
    clock = FakeClock(0.0)
    speed = LowSpeed(1024, 10.0, clock)
    clock.now = 10.0
    speed.received(1_000_000)  # a fast first window
    clock.now = 20.0
    with pytest.raises(Unanswered):
        speed.received(10)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("3600", 60.0),
        ("9" * 400, 60.0),
        ("Wed, 21 Oct 2015 07:28:20 GMT", 20.0),  # `now` is 07:28:00
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
        ("²", None),
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date_capped(
    header: str | None, expected: float | None
) -> None:
    """Retry-After as ASCII digits or an HTTP-date, capped at 60 s; anything else is ignored."""
    assert retry_after(header, 1445412480.0) == expected


def test_messages_are_clipped_to_one_short_line() -> None:
    """A long, multi-line message becomes one line of at most 300 characters."""
    text = clip("a\nb  " + "x" * 100_000)
    assert len(text) == 300 and text.startswith("a b x") and "\n" not in text


def _config(tmp_path: Path, *flags: str) -> DownloadPolicy:
    args = build_parser().parse_args(["run", *flags])
    env = {
        "HUAWEICLOUD_SDK_AK": TEST_AK,
        "HUAWEICLOUD_SDK_SK": TEST_SK,
        "HUAWEICLOUD_SDK_PROJECT_ID": TEST_PROJECT_ID,
    }
    return build_config(args, env, tmp_path).download


def test_download_flags_reach_the_policy(tmp_path: Path) -> None:
    """--speed-limit, --speed-time and --max-file-bytes (0: no cap; default 4 GiB) are used."""
    default = _config(tmp_path)
    assert (default.speed_limit, default.speed_time) == (1024, 30.0)
    assert default.max_file_bytes == 4 * 1024**3
    given = _config(tmp_path, "--speed-limit", "0", "--speed-time", "0.5", "--max-file-bytes", "0")
    assert (given.speed_limit, given.speed_time, given.max_file_bytes) == (0, 0.5, None)
