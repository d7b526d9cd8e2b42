"""Parsing ShowAsyncTtsJob answers and error bodies."""

from __future__ import annotations

import pytest
from yarl import URL

from watcher.api import _error, host_header, parse_status
from watcher.errors import ApiError, AuthError, ThrottledError


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
