"""Routing of answers and the frozen job snapshot: what each status means, whoever read it, and
that what leaves the poller cannot change under the download workers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from watcher._download import Finished
from watcher._inputs import Job
from watcher._manifest import ErrorInfo, JobResult, JobSnapshot
from watcher._parse import JobStatus
from watcher._routing import Route, failure, route, unknown_state
from watcher._schedule import Watched

AUDIO = {"audio": "http://127.0.0.1:9/a.wav"}
WALL = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "listed", "expected"),
    [
        (JobStatus("WAITING"), False, Route.PENDING),
        (JobStatus("PROCESSING"), True, Route.PENDING),
        (JobStatus("SUCCEED", AUDIO), False, Route.DOWNLOAD),
        (JobStatus("SUCCEED", AUDIO), True, Route.DOWNLOAD),
        (JobStatus("SUCCEED", {"srt": "http://127.0.0.1:9/a.srt"}), True, Route.ASK_LINKS),
        (JobStatus("SUCCEED"), False, Route.DOWNLOAD),  # no links from the job itself: NO_AUDIO
        (JobStatus("FAILED", code="MSS.1", message="no voice"), False, Route.FAILED),
        (JobStatus("FAILED", code="MSS.1"), True, Route.FAILED),
        (JobStatus("FAILED", message="no voice"), True, Route.ASK_CODE),
        (JobStatus("FAILED"), False, Route.FAILED),
        (JobStatus("PROCESSING", code="MSS.2"), False, Route.FAILED),  # a code says it failed
        (JobStatus("CANCELLED"), False, Route.UNKNOWN),
        (JobStatus("CANCELLED"), True, Route.UNKNOWN),
    ],
)
def test_each_status_has_one_route(status: JobStatus, listed: bool, expected: Route) -> None:
    """The module docstring's table, from a single GET and from a list row."""
    assert route(status, listed=listed) is expected


def test_a_failed_line_carries_the_apis_code_else_failed_and_a_message() -> None:
    """The code and message as given; FAILED and the fallback (the list's fail_msg) or a stock
    message when missing; an unknown state names it."""
    coded = JobStatus("FAILED", code="MSS.1", message="no voice", request_id="r1")
    assert failure(coded) == ErrorInfo("MSS.1", "no voice", "r1")
    assert failure(JobStatus("FAILED"), "from the list") == ErrorInfo("FAILED", "from the list")
    assert failure(JobStatus("FAILED")) == ErrorInfo("FAILED", "the job failed")
    odd = unknown_state(JobStatus("CANCELLED", request_id="r2"))
    assert odd == ErrorInfo("UNKNOWN_STATE", "the API reported state 'CANCELLED'", "r2")


def test_a_snapshot_is_frozen_and_independent_of_the_record_it_was_taken_from() -> None:
    """Taken from a Watched record at 10 s: later changes to the record do not reach it, and
    neither it nor the Finished that carries it can be assigned to."""
    w = Watched(Job("a", {"k": 1}), admitted=2.0, polls=3, state="SUCCEED", first_poll=4.0)
    w.first_poll_at = WALL
    seen = w.snapshot(10.0, WALL)
    w.polls, w.state, w.first_poll = 99, "WAITING", 0.0
    assert seen == JobSnapshot(Job("a"), "SUCCEED", 3, WALL, 4.0, 10.0, WALL)
    finished = Finished(seen, JobStatus("SUCCEED", AUDIO))
    with pytest.raises(dataclasses.FrozenInstanceError):
        seen.polls = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        finished.seen = seen  # type: ignore[misc]


def test_a_manifest_line_is_built_from_the_snapshot() -> None:
    """`JobResult.of`: state, polls, first poll, finish time, meta from the snapshot; elapsed
    from the first poll (from admission for a job never read)."""
    w = Watched(Job("a", {"k": 1}), admitted=2.0, polls=3, state="SUCCEED", first_poll=4.0)
    line = JobResult.of(w.snapshot(10.0, WALL), "SUCCEED")
    assert (line.job_id, line.status, line.state, line.polls) == ("a", "SUCCEED", "SUCCEED", 3)
    assert (line.finished_at, line.elapsed_s, line.meta) == (WALL, 6.0, {"k": 1})
    never_read = Watched(Job("b"), admitted=2.0)
    assert JobResult.of(never_read.snapshot(10.0, WALL), "TIMEOUT").elapsed_s == 8.0
