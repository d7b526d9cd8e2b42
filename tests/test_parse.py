"""Parsing the API's answers (`_parse.py`): statuses, list pages and rows, times, messages."""

from __future__ import annotations

from typing import Any

import pytest

from watcher._errors import ApiError
from watcher._parse import (
    AnswerError,
    JobPage,
    ListedJob,
    cut,
    field_text,
    format_time,
    parse_listed,
    parse_page,
    parse_status,
    parse_time,
)


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
    assert cut("abcdef", 4) == "abc…"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        ("", None),
        (True, None),
        ("MSS.1", "MSS.1"),
        (42, "42"),
        (3.0, "3"),
        (float("nan"), "null"),  # no integer: shown as JSON, never an error
        ({"a": 1}, '{"a":1}'),
        ({}, None),
        ("z" * 1000, "z" * 299 + "…"),
    ],
)
def test_code_and_message_fields_become_short_text(value: object, text: str | None) -> None:
    """Code, message and request id fields of any JSON type become one short line, or None."""
    assert field_text(value) == text


def test_list_times_are_whole_seconds_in_utc() -> None:
    """The list call's create_since/until is whole seconds, UTC, with a Z."""
    assert format_time(1796112000.9) == "2026-12-01T08:00:00Z"
    assert parse_time(format_time(1796112000.9)) == 1796112000.0


def test_a_page_keeps_its_readable_rows_and_its_count() -> None:
    """A page keeps rows with a job id (those without are dropped) and the count it states."""
    rows = [
        {"job_id": "j1", "job_state": "PROCESSING", "create_time": "2026-12-01T08:00:00Z"},
        {"job_state": "SUCCEED"},  # no id: dropped
        {
            "job_id": "j2",
            "job_state": "FAILED",
            "fail_msg": "voice gone",
            "files": [{"audio_file_url": "https://a"}],
        },
    ]
    page = parse_page({"count": 250, "data": rows}, "r")
    assert page.count == 250
    assert [j.job_id for j in page.jobs] == ["j1", "j2"]
    assert page.jobs[0] == ListedJob("j1", 1796112000.0, page.jobs[0].status)
    failed = page.jobs[1].status
    assert failed is not None and failed.failed and failed.message == "voice gone"
    assert dict(failed.links) == {"audio": "https://a"} and failed.request_id == "r"


@pytest.mark.parametrize("count", [None, -1, True, "7", 2.5])
def test_a_page_without_a_usable_count_counts_its_rows(count: object) -> None:
    """A count that is missing, negative, a bool or not an integer is the page's own length."""
    page = parse_page({"count": count, "data": [{"job_id": "j", "job_state": "WAITING"}]}, None)
    assert page.count == 1


@pytest.mark.parametrize("body", [{}, {"data": None}, {"count": 0, "data": []}])
def test_no_rows_is_an_empty_page(body: dict[str, Any]) -> None:
    """No `data`, a null one or an empty list is an empty page, not an error."""
    assert parse_page(body, None) == JobPage(0, ())


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([{"job_id": "j"}], "not a page"),
        ("page", "not a page"),
        ({"data": {"job_id": "j"}}, "not a page"),
        ({"data": "rows"}, "not a page"),
        ({"data": [1, {"job_state": "SUCCEED"}]}, "none of the page's 2 rows"),
    ],
)
def test_what_is_not_a_page_is_an_answer_error(body: object, says: str) -> None:
    """A body that is no page, or whose rows all lack a job id, is an AnswerError."""
    with pytest.raises(AnswerError, match=says):
        parse_page(body, None)
