"""Parsing ShowAsyncTtsJob answers and error bodies."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from yarl import URL

from watcher._api import (
    _error,
    cut,
    host_header,
    parse_listed,
    parse_status,
    parse_time,
)
from watcher._errors import ApiError, AuthError, ThrottledError
from watcher._retry import parse_retry_after


def test_success_with_links() -> None:
    """SUCCEED with links is final, not failed, and maps each link to its file kind."""
    status = parse_status(
        {
            "state": "SUCCEED",
            "audio_file_url": "https://a",
            "audio_srt_file_url": "https://s",
            "x": 1,
        },
        "rid",
    )
    assert status.final and not status.failed
    assert dict(status.links) == {"audio": "https://a", "srt": "https://s"}


@pytest.mark.parametrize("state", ["WAITING", "PROCESSING"])
def test_pending_states_are_not_final(state: str) -> None:
    """WAITING and PROCESSING mean: ask again later."""
    assert not parse_status({"state": state}, None).final


def test_a_200_can_say_the_job_failed() -> None:
    """A non-zero code or a message on a 200 marks the job failed whatever its state."""
    assert parse_status({"state": "SUCCEED", "code": "MSS.1", "message": "bad"}, None).failed
    assert parse_status({"state": "PROCESSING", "message": "broken"}, None).final
    assert not parse_status({"state": "SUCCEED", "code": "0", "message": ""}, None).failed


def test_unknown_state_is_final_so_nothing_loops_forever() -> None:
    """An unknown state (e.g. CANCELED) counts as final."""
    status = parse_status({"state": "CANCELED"}, None)
    assert status.final and not status.failed


def test_error_in_a_200_body_raises() -> None:
    """A 200 with error_code/error_msg and no state is an ApiError carrying them."""
    with pytest.raises(ApiError) as caught:
        parse_status(
            {"error_code": "MSS.000000002", "error_msg": "internal", "request_id": "r1"}, None
        )
    assert (caught.value.code, caught.value.request_id) == ("MSS.000000002", "r1")


def test_error_bodies_map_to_the_right_exception() -> None:
    """401 is AuthError, 429 ThrottledError with Retry-After, 400 permanent, 5xx transient."""
    auth = _error(401, b'{"error_code":"APIGW.0301","error_msg":"bad","request_id":"r"}', {})
    assert isinstance(auth, AuthError) and auth.request_id == "r" and not auth.transient
    throttled = _error(429, b'{"error_code":"APIGW.0308","error_msg":"slow"}', {"Retry-After": "3"})
    assert isinstance(throttled, ThrottledError) and throttled.retry_after == 3.0
    assert throttled.transient
    bad = _error(400, b'{"error_code":"MSS.000000003","error_msg":"no job"}', {"X-Request-Id": "h"})
    assert not bad.transient and bad.request_id == "h" and bad.code == "MSS.000000003"
    assert _error(502, b"<html>bad gateway</html>", {}).transient
    assert isinstance(_error(403, b'{"error_code":"MSS.000000004","error_msg":"x"}', {}), AuthError)


def test_host_header_keeps_only_non_default_ports() -> None:
    """Host carries the port only when it is not the scheme's default, as the SDK signs it."""
    assert host_header(URL("https://metastudio.cn-north-4.myhuaweicloud.com")) == (
        "metastudio.cn-north-4.myhuaweicloud.com"
    )
    assert host_header(URL("http://127.0.0.1:8080")) == "127.0.0.1:8080"
    assert host_header(URL("http://[::1]:81")) == "[::1]:81"


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        1_733_000_000_000_000,  # microseconds
        10**30,
        float("nan"),
        float("inf"),
        {"seconds": 1},
        [1],
        True,
        "",
        "yesterday",
        "9" * 5000,
    ],
)
def test_impossible_times_are_unknown_never_an_error(value: object) -> None:
    """Times out of range, of the wrong type or unreadable are None; nothing raises."""
    assert parse_time(value) is None


def test_readable_times_are_epoch_seconds() -> None:
    """ISO 8601 (naive means UTC), epoch seconds and milliseconds, as numbers or digits."""
    assert parse_time("2026-12-01T08:00:00Z") == 1796112000.0
    assert parse_time("2026-12-01T08:00:00") == 1796112000.0
    assert parse_time(1796112000) == parse_time("1796112000000") == 1796112000.0


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


def test_a_code_without_state_is_a_failed_job() -> None:
    """A 200 with a non-"0" code and no state is FAILED with that code and message."""
    status = parse_status({"code": "MSS.00000003", "message": "the voice is gone"}, "r")
    assert (status.state, status.code, status.message) == (
        "FAILED",
        "MSS.00000003",
        "the voice is gone",
    )
    assert status.final and status.failed


@pytest.mark.parametrize("body", [{"code": "0"}, {"error_code": "X.1", "error_msg": "busy"}, {}])
def test_no_state_and_no_failure_code_is_a_transient_error(body: dict[str, str]) -> None:
    """A 200 with error_code/error_msg (or code "0") and no state stays transient."""
    with pytest.raises(ApiError) as caught:
        parse_status(body, None)
    assert caught.value.transient


def test_a_row_without_a_readable_state_is_left_to_its_job() -> None:
    """A row with an id but no readable state has status None; one without an id is dropped."""
    listed = parse_listed({"job_id": "j1", "job_state": {"x": 1}, "create_time": "NaN"}, None)
    assert listed is not None and listed.status is None and listed.create_time is None
    assert parse_listed({"job_state": "SUCCEED"}, None) is None
    assert parse_listed("not a row", None) is None


def test_messages_are_cut_to_a_few_hundred_characters() -> None:
    """Long or multi-line messages become one line of at most 300 characters."""
    assert len(cut("x" * 10_000)) == 300
    assert cut("a\n  b") == "a b"
    error = _error(400, b'{"error_code":"E","error_msg":"' + b"y" * 9000 + b'"}', {})
    assert len(error.message) <= 300
