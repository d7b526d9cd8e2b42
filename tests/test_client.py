"""The API client (`_client.py`): error answers mapped to our errors, the Host it signs, capped
reads, and answers that are not JSON, over loopback."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import aiohttp
import anyio
import pytest
from hostile_api import Reply, hostile_api
from yarl import URL

from watcher._auth import Token
from watcher._client import (
    SHOW_CAP,
    AnswerTooLarge,
    MetaStudioClient,
    error_for,
    host_header,
    server_time,
)
from watcher._config import ApiConfig
from watcher._errors import ApiError, AuthError, ThrottledError, TransportError
from watcher._parse import AnswerError
from watcher._retry import parse_retry_after


def test_error_bodies_map_to_the_right_exception() -> None:
    """401 is AuthError, 429 ThrottledError with Retry-After, 400 permanent, 5xx transient."""
    auth = error_for(401, b'{"error_code":"APIGW.0301","error_msg":"bad","request_id":"r"}', {})
    assert isinstance(auth, AuthError) and auth.request_id == "r" and not auth.transient
    throttled = error_for(
        429, b'{"error_code":"APIGW.0308","error_msg":"slow"}', {"Retry-After": "3"}
    )
    assert isinstance(throttled, ThrottledError) and throttled.retry_after == 3.0
    assert throttled.transient
    bad = error_for(
        400, b'{"error_code":"MSS.000000003","error_msg":"no job"}', {"X-Request-Id": "h"}
    )
    assert not bad.transient and bad.request_id == "h" and bad.code == "MSS.000000003"
    assert error_for(502, b"<html>bad gateway</html>", {}).transient
    refused = error_for(403, b'{"error_code":"MSS.000000004","error_msg":"x"}', {})
    assert isinstance(refused, AuthError)


def test_an_error_body_that_is_not_json_is_its_text_cut() -> None:
    """A non-JSON error body is the message (one line, cut), the status the code; empty: HTTP n."""
    error = error_for(503, b"<html>\n  busy  \n</html>", {})
    assert (error.code, error.message) == ("503", "<html> busy </html>")
    assert error_for(500, b"", {}).message == "HTTP 500"


def test_error_messages_are_cut_to_a_few_hundred_characters() -> None:
    """An error answer's message is at most 300 characters, however long the body's."""
    error = error_for(400, b'{"error_code":"E","error_msg":"' + b"y" * 9000 + b'"}', {})
    assert len(error.message) <= 300


def test_host_header_keeps_only_non_default_ports() -> None:
    """Host carries the port only when it is not the scheme's default, as the SDK signs it."""
    assert host_header(URL("https://metastudio.cn-north-4.myhuaweicloud.com")) == (
        "metastudio.cn-north-4.myhuaweicloud.com"
    )
    assert host_header(URL("http://127.0.0.1:8080")) == "127.0.0.1:8080"
    assert host_header(URL("http://[::1]:81")) == "[::1]:81"


def test_server_time_is_the_date_header_or_none() -> None:
    """A readable Date header is an aware datetime; a missing or unreadable one is None."""
    when = server_time({"Date": "Tue, 01 Dec 2026 08:00:00 GMT"})
    assert when == datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)
    assert server_time({}) is None
    assert server_time({"Date": "yesterday"}) is None


NOW = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("²", None),  # '²'.isdigit() is True in Python; it is no delta-seconds
        ("١٢", None),  # Arabic-Indic digits, likewise
        ("1.5", None),
        ("-3", None),
        ("soon", None),
        ("9" * 400, math.inf),
        ("Tue, 01 Dec 2026 08:01:30 GMT", 90.0),
        ("Tue, 01 Dec 2026 07:00:00 GMT", 0.0),  # in the past: at once
        (None, None),
    ],
)
def test_retry_after_is_ascii_delta_seconds_or_an_http_date(
    value: str | None, seconds: float | None
) -> None:
    """Retry-After: ASCII digits or an HTTP-date; anything else is ignored (None)."""
    assert parse_retry_after(value, NOW) == seconds


def _client(url: str, session: aiohttp.ClientSession) -> MetaStudioClient:
    return MetaStudioClient(ApiConfig(url, "project", Token("t0ken")), session)


@pytest.mark.anyio
@pytest.mark.parametrize("chunked", [False, True])
async def test_an_answer_past_its_cap_is_refused_unread(chunked: bool) -> None:
    """A show answer larger than SHOW_CAP is AnswerTooLarge, with or without a Content-Length."""
    async with hostile_api() as api, aiohttp.ClientSession() as session:
        api.show = lambda asked: Reply(body=b" " * (SHOW_CAP + 1), chunked=chunked)
        with anyio.fail_after(20), pytest.raises(AnswerTooLarge, match="larger than"):
            await _client(api.url, session).show_job("j1")


@pytest.mark.anyio
async def test_an_answer_that_is_not_json_is_an_answer_error() -> None:
    """A 200 that is not JSON, or JSON but not an object, is an AnswerError (no outage)."""
    async with hostile_api() as api, aiohttp.ClientSession() as session:
        client = _client(api.url, session)
        api.show = lambda asked: Reply(body=b"<html>login</html>")
        with anyio.fail_after(10), pytest.raises(AnswerError, match="not JSON"):
            await client.show_job("j1")
        api.show = lambda asked: Reply(body=["SUCCEED"])
        with anyio.fail_after(10), pytest.raises(AnswerError, match="not a JSON object"):
            await client.show_job("j1")
        api.list = lambda asked: Reply(body=[{"job_id": "j1"}])
        with anyio.fail_after(10), pytest.raises(AnswerError, match="not a page"):
            await client.list_jobs(offset=0)
        assert client.requests == 3


@pytest.mark.anyio
async def test_answers_are_parsed_and_errors_mapped_over_the_wire() -> None:
    """Show and list answers come back parsed; an error answer raises what `error_for` maps."""
    async with hostile_api() as api, aiohttp.ClientSession() as session:
        client = _client(api.url, session)
        with anyio.fail_after(10):
            status = await client.show_job("j1")
            page = await client.list_jobs(offset=0, since=1796112000.0)
        assert status.state == "SUCCEED" and status.links["audio"].endswith("/files/j1.wav")
        assert [j.job_id for j in page.jobs] == ["j1"] and page.count == 1
        assert api.asked[1].query["create_since"] == "2026-12-01T08:00:00Z"
        assert api.asked[0].headers["X-Auth-Token"] == "t0ken"
        api.show = lambda asked: Reply(429, {"error_code": "APIGW.0308"}, {"Retry-After": "7"})
        with anyio.fail_after(10), pytest.raises(ThrottledError) as caught:
            await client.show_job("j1")
        assert caught.value.retry_after == 7.0


@pytest.mark.anyio
async def test_no_answer_at_all_is_a_transport_error() -> None:
    """A refused connection is a TransportError naming the request, not aiohttp's error."""
    async with hostile_api() as api:
        url = api.url  # the server is gone once the block ends: its port refuses
    async with aiohttp.ClientSession() as session:
        with anyio.fail_after(10), pytest.raises(TransportError, match="GET /v1/") as caught:
            await _client(url, session).show_job("j1")
    assert not isinstance(caught.value, ApiError | AnswerError)
