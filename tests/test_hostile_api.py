"""The watcher against an API that answers the way real networks, proxies and IAM policies do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import FAST, make_jobs, read_manifest, run_config, run_jobs
from hostile_api import Asked, HostileApi, Reply, ShowScript, hostile_api
from structlog.testing import capture_logs

from watcher import _gate as gate
from watcher import _poller as poller
from watcher._auth import Token, parse_sdk_date
from watcher._engine import Hooks, watch
from watcher._errors import AuthError
from watcher._gate import ApiGate
from watcher._inputs import Job
from watcher._progress import Snapshot

LIST = replace(FAST, strategy="list", cadence=0.05, throttle_pause=0.01)


def _statuses(out: Path) -> set[tuple[str, str | None]]:
    return {(r["status"], (r.get("error") or {}).get("code")) for r in read_manifest(out)}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "reply",
    [
        Reply(403, {"error_code": "MSS.00000403", "error_msg": "not allowed by IAM policy"}),
        Reply(403, {"error_code": "MSS.000000004", "error_msg": "no permission for ShowTtsJob"}),
        Reply(200, b"<html><body>Proxy login</body></html>", {"Content-Type": "text/html"}),
        Reply(200, [{"job_id": "job-000", "job_state": "SUCCEED"}]),
        Reply(200, {"count": 3, "data": [1, "two", {"no": "id"}]}),
    ],
    ids=["403", "403-auth-code", "html", "json-list", "unreadable-rows"],
)
async def test_an_unusable_list_call_falls_back_to_single_gets(
    tmp_path: Path, reply: Reply
) -> None:
    """A list call that cannot work: warned once, one list call, every job polled singly."""
    jobs = make_jobs(6)
    async with hostile_api() as api:
        api.list = lambda asked: reply
        with capture_logs() as logs, anyio.fail_after(10):
            await run_jobs(run_config(api.url, tmp_path, LIST), *jobs)
    assert _statuses(tmp_path) == {("SUCCEED", None)}
    assert api.count("list") == 1
    assert api.count("show") == 6
    warnings = [e for e in logs if e["log_level"] == "warning" and "list call" in e["event"]]
    assert len(warnings) == 1, warnings


@pytest.mark.anyio
async def test_auto_with_a_forbidden_list_polls_everything_singly(tmp_path: Path) -> None:
    """--poll auto with more jobs than single GETs can serve and a 403 on the list (the hang of
    issue 14): one list call, a warning, every job SUCCEEDs by single GETs."""
    jobs = make_jobs(12)
    poll = replace(FAST, strategy="auto", rate=100, cadence=0.05)  # capacity: 5 jobs a cadence
    async with hostile_api() as api:
        api.list = lambda asked: Reply(403, {"error_code": "MSS.403", "error_msg": "denied"})
        with anyio.fail_after(10):
            await run_jobs(run_config(api.url, tmp_path, poll), *jobs)
    assert _statuses(tmp_path) == {("SUCCEED", None)}
    assert api.count("list") == 1


@pytest.mark.anyio
async def test_a_list_that_keeps_failing_transiently_is_given_up(tmp_path: Path) -> None:
    """List pages that are always 500 (single GETs fine): sweeps stop, every job SUCCEEDs."""
    jobs = make_jobs(4)
    async with hostile_api() as api:
        api.list = lambda asked: Reply(500, {"error_code": "MSS.000000002", "error_msg": "x"})
        with anyio.fail_after(10):
            await run_jobs(run_config(api.url, tmp_path, LIST), *jobs)
    assert _statuses(tmp_path) == {("SUCCEED", None)}


@pytest.mark.anyio
async def test_impossible_creation_times_affect_only_their_row(tmp_path: Path) -> None:
    """Rows timed 0001-01-01, 9999-12-31, in microseconds, 10**30 or a dict: no crash."""
    times: list[Any] = [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        1_733_000_000_000_000,
        10**30,
        {"seconds": 1},
        "yesterday",
    ]
    jobs = make_jobs(len(times))
    async with hostile_api() as api:

        def rows(asked: Asked) -> Reply:
            state = "WAITING" if asked.nth <= 2 else "SUCCEED"
            data = [
                api.row(j.job_id, job_state=state, create_time=t)
                for j, t in zip(jobs, times, strict=True)
            ]
            return Reply(body={"count": len(data), "data": data})

        api.list = rows
        with anyio.fail_after(10):
            summary = await run_jobs(run_config(api.url, tmp_path, LIST), *jobs)
    assert _statuses(tmp_path) == {("SUCCEED", None)}
    assert api.count("list") >= 3  # the later sweeps ran with those times in the window
    assert summary.polls.sightings >= len(jobs)


@pytest.mark.anyio
async def test_a_row_with_an_unreadable_state_gets_a_single_get(tmp_path: Path) -> None:
    """A row whose job_state is a number: that job is asked about singly, the others listed."""
    jobs = make_jobs(3)
    async with hostile_api() as api:

        def rows(asked: Asked) -> Reply:
            data = [api.row(j.job_id) for j in jobs]
            data[0]["job_state"] = 7
            return Reply(body={"count": 3, "data": data})

        api.list = rows
        with anyio.fail_after(10):
            await run_jobs(run_config(api.url, tmp_path, LIST), *jobs)
    assert _statuses(tmp_path) == {("SUCCEED", None)}
    assert {a.job_id for a in api.asked if a.api == "show"} == {"job-000"}


def _throttle_once(api: HostileApi, value: str) -> ShowScript:
    """A show that answers each job's first GET 429 with `Retry-After: value`."""

    def show(asked: Asked) -> Reply:
        if asked.nth == 1:
            body = {"error_code": "APIGW.0308", "error_msg": "throttled"}
            return Reply(429, body, {"Retry-After": value})
        return api.succeed(asked)

    return show


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["²", "9" * 400, "3600", "-5", "1e3", ""])
async def test_any_retry_after_is_survived_and_capped(tmp_path: Path, value: str) -> None:
    """Retry-After `²`, 400 digits, 3600, junk: never a crash, never a pause past --max-pause."""
    jobs = make_jobs(2)
    poll = replace(FAST, throttle_pause=0.01, max_pause=0.05)
    async with hostile_api() as api:
        api.show = _throttle_once(api, value)
        with anyio.fail_after(10):
            await run_jobs(run_config(api.url, tmp_path, poll), *jobs)
    assert _statuses(tmp_path) == {("SUCCEED", None)}


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["3600", "9" * 400, "http-date"])
async def test_a_long_retry_after_is_capped_and_the_cap_logged(tmp_path: Path, value: str) -> None:
    """3600, 400 digits and an HTTP-date an hour ahead: the pause is --max-pause, logged."""
    if value == "http-date":
        value = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    jobs = make_jobs(1)
    poll = replace(FAST, max_pause=0.05)
    async with hostile_api() as api:
        api.show = _throttle_once(api, value)
        with capture_logs() as logs, anyio.fail_after(10):
            await run_jobs(run_config(api.url, tmp_path, poll), *jobs)
    assert _statuses(tmp_path) == {("SUCCEED", None)}
    [capped] = [e for e in logs if "--max-pause" in e["event"]]
    assert capped["pause_s"] == 0.05
    assert capped["asked_s"] == "huge" or capped["asked_s"] > 3000


@pytest.mark.anyio
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_oversized_answer_is_that_jobs_error(tmp_path: Path, chunked: bool) -> None:
    """A 5 MiB ShowAsyncTtsJob answer (announced or not): the job is ERROR naming the cap;
    the other job succeeds."""
    jobs = make_jobs(2)
    async with hostile_api() as api:

        def show(asked: Asked) -> Reply:
            if asked.job_id == "job-000":
                body = {"state": "FAILED", "code": "X", "pad": "a" * (5 << 20)}
                return Reply(body=body, chunked=chunked)
            return api.succeed(asked)

        api.show = show
        with anyio.fail_after(20):
            await run_jobs(run_config(api.url, tmp_path), *jobs)
    by_id = {r["job_id"]: r for r in read_manifest(tmp_path)}
    assert by_id["job-001"]["status"] == "SUCCEED"
    assert by_id["job-000"]["status"] == "ERROR"
    assert "larger than 4,194,304 bytes" in by_id["job-000"]["error"]["message"]


@pytest.mark.anyio
async def test_an_oversized_page_makes_the_list_unusable(tmp_path: Path) -> None:
    """A 17 MiB list page: the list call is given up at once; jobs are polled singly."""
    jobs = make_jobs(3)
    async with hostile_api() as api:
        api.list = lambda asked: Reply(body={"count": 1, "pad": "b" * (17 << 20)}, chunked=True)
        with anyio.fail_after(20):
            await run_jobs(run_config(api.url, tmp_path, LIST), *jobs)
    assert _statuses(tmp_path) == {("SUCCEED", None)}
    assert api.count("list") == 1


@pytest.mark.anyio
async def test_a_200_with_a_code_and_no_state_is_failed(tmp_path: Path) -> None:
    """{"code": "MSS.00000003", "message": ...} without state: FAILED with that code, at once."""
    jobs = make_jobs(1)
    async with hostile_api() as api:
        api.show = lambda asked: Reply(body={"code": "MSS.00000003", "message": "voice gone"})
        await run_jobs(run_config(api.url, tmp_path), *jobs)
    [line] = read_manifest(tmp_path)
    assert (line["status"], line["error"]["code"]) == ("FAILED", "MSS.00000003")
    assert line["error"]["message"] == "voice gone"
    assert api.count("show") == 1


@pytest.mark.anyio
async def test_error_messages_are_cut_short(tmp_path: Path) -> None:
    """A 400 with a 100 KB error message: the manifest keeps a few hundred characters."""
    jobs = make_jobs(1)
    async with hostile_api() as api:
        body = {"error_code": "MSS.000000003", "error_msg": "x" * 100_000}
        api.show = lambda asked: Reply(400, body)
        await run_jobs(run_config(api.url, tmp_path), *jobs)
    [line] = read_manifest(tmp_path)
    assert line["status"] == "ERROR"
    assert 0 < len(line["error"]["message"]) <= 300


SKEW = timedelta(minutes=20)


def _skewed_server(api: HostileApi) -> ShowScript:
    """A show that checks X-Sdk-Date against a server clock 20 minutes ahead, as APIGW does."""

    def show(asked: Asked) -> Reply:
        server_now = datetime.now(UTC) + SKEW
        signed = parse_sdk_date(asked.headers.get("X-Sdk-Date", "19700101T000000Z"))
        if abs((server_now - signed).total_seconds()) > 900:
            body = {"error_code": "APIGW.0301", "error_msg": "verify aksk signature fail"}
            return Reply(401, body, {"Date": format_datetime(server_now, usegmt=True)})
        return api.succeed(asked)

    return show


@pytest.mark.anyio
async def test_a_skewed_clock_is_named_and_corrected(tmp_path: Path) -> None:
    """A server clock 20 min ahead: the refusal says the clock is off, then signing with the
    server's time succeeds."""
    jobs = make_jobs(3)
    async with hostile_api() as api:
        api.show = _skewed_server(api)
        with capture_logs() as logs, anyio.fail_after(10):
            await run_jobs(run_config(api.url, tmp_path), *jobs)
    assert _statuses(tmp_path) == {("SUCCEED", None)}
    told = [e for e in logs if "clock is off by" in str(e.get("reason", ""))]
    assert told and "behind" in told[0]["reason"]
    assert sum(1 for a in api.asked if a.api == "show") <= 3 + 3


@pytest.mark.anyio
async def test_a_token_refused_with_a_far_off_date_says_the_clock_is_off(tmp_path: Path) -> None:
    """Token auth (nothing to re-sign): the AuthError that stops the run names the clock gap."""
    jobs = make_jobs(1)
    async with hostile_api() as api:

        def show(asked: Asked) -> Reply:
            body = {"error_code": "APIGW.0301", "error_msg": "token expired"}
            date = format_datetime(datetime.now(UTC) - SKEW, usegmt=True)
            return Reply(401, body, {"Date": date})

        api.show = show
        config = run_config(api.url, tmp_path, credentials=Token("some-token"))
        with pytest.raises(AuthError, match=r"clock is off by 1[12]\d\d s: it is ahead"):
            await run_jobs(config, *jobs)


@pytest.mark.anyio
async def test_a_rotated_token_file_keeps_the_run_going(tmp_path: Path) -> None:
    """The token file is rewritten (a sidecar) while the old token is refused: no refusal
    counts, the new token is used and every job SUCCEEDs."""
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    jobs = make_jobs(3)
    async with hostile_api() as api:

        def show(asked: Asked) -> Reply:
            if asked.headers.get("X-Auth-Token") == "rotated-token":
                return api.succeed(asked)
            if "rotated" not in token_file.read_text():
                token_file.write_text("rotated-token\n")  # the sidecar, just before the refusal
            return Reply(401, {"error_code": "APIGW.0301", "error_msg": "token expired"})

        api.show = show
        creds = Token("old-token", token_file)
        poll = replace(FAST, auth_failures=1)  # one counted refusal would stop the run
        with anyio.fail_after(10):
            await run_jobs(run_config(api.url, tmp_path / "out", poll, credentials=creds), *jobs)
    assert _statuses(tmp_path / "out") == {("SUCCEED", None)}


def _failed_in_the_list(api: HostileApi, jobs: list[Job]) -> ShowScript:
    def rows(asked: Asked) -> Reply:
        data = [
            api.row(j.job_id, job_state="FAILED", fail_msg="the voice asset is unavailable")
            for j in jobs
        ]
        return Reply(body={"count": len(data), "data": data})

    return rows


@pytest.mark.anyio
async def test_a_failed_job_seen_in_the_list_gets_its_real_code(tmp_path: Path) -> None:
    """FAILED in the list (fail_msg, no code): one single GET gives the line its real code."""
    jobs = make_jobs(3)
    async with hostile_api() as api:
        api.list = _failed_in_the_list(api, jobs)
        api.show = lambda asked: Reply(
            body={"state": "FAILED", "code": "MSS.00000010", "message": "voice asset gone"}
        )
        with anyio.fail_after(10):
            await run_jobs(run_config(api.url, tmp_path, LIST), *jobs)
    assert _statuses(tmp_path) == {("FAILED", "MSS.00000010")}
    assert api.count("show") == 3


@pytest.mark.anyio
async def test_a_failed_job_whose_code_cannot_be_had_keeps_code_failed(tmp_path: Path) -> None:
    """FAILED in the list, and its single GET fails: the line says FAILED with the list's
    message, and nothing is retried."""
    jobs = make_jobs(2)
    async with hostile_api() as api:
        api.list = _failed_in_the_list(api, jobs)
        api.show = lambda asked: Reply(400, {"error_code": "MSS.000000003", "error_msg": "?"})
        with anyio.fail_after(10):
            await run_jobs(run_config(api.url, tmp_path, LIST), *jobs)
    lines = read_manifest(tmp_path)
    assert {(r["status"], r["error"]["code"]) for r in lines} == {("FAILED", "FAILED")}
    assert {r["error"]["message"] for r in lines} == {"the voice asset is unavailable"}
    assert api.count("show") == 2


@pytest.mark.anyio
async def test_the_pause_and_its_length_reach_the_progress_snapshot(tmp_path: Path) -> None:
    """A 429 with Retry-After 1 (capped to 0.3 s): progress snapshots carry the pause left."""
    jobs = make_jobs(1)
    poll = replace(FAST, max_pause=0.3)
    snapshots: list[Snapshot] = []
    hooks = Hooks(on_progress=snapshots.append, progress_interval=0.01)

    async def each() -> AsyncIterator[Job]:
        for job in jobs:
            yield job

    async with hostile_api() as api:
        api.show = _throttle_once(api, "1")
        with anyio.fail_after(10):
            await watch(run_config(api.url, tmp_path, poll), each(), hooks=hooks)
    pauses = [s.pause_s for s in snapshots if s.pause_s is not None]
    assert pauses and 0 < max(pauses) <= 0.3
    assert snapshots[-1].pause_s is None


@pytest.mark.anyio
async def test_success_on_the_api_is_a_debug_event(tmp_path: Path) -> None:
    """The API's SUCCEED (nothing saved yet) is logged at debug as "job succeeded on the API"."""
    async with hostile_api() as api:
        with capture_logs() as logs:
            await run_jobs(run_config(api.url, tmp_path), *make_jobs(1))
    [event] = [e for e in logs if "succeeded" in e["event"]]
    assert (event["event"], event["log_level"]) == ("job succeeded on the API", "debug")


@pytest.mark.anyio
async def test_the_code_lookup_waits_for_spare_budget_and_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When no request slot is ever spare, a list-seen FAILED job sends no GET for its code
    and its line keeps code FAILED once the wait is over."""
    monkeypatch.setattr(ApiGate, "spare", lambda self: False)
    monkeypatch.setattr(poller, "CODE_WAIT", 0.2)
    jobs = make_jobs(2)
    async with hostile_api() as api:
        api.list = _failed_in_the_list(api, jobs)
        with anyio.fail_after(10):
            await run_jobs(run_config(api.url, tmp_path, LIST), *jobs)
    assert _statuses(tmp_path) == {("FAILED", "FAILED")}
    assert api.count("show") == 0


@pytest.mark.anyio
async def test_the_list_is_tried_again_later_and_sweeps_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list call that fails once with 403 and then works: after the retry interval one page
    is tried, sweeps resume (logged), and jobs are seen in the list again."""
    monkeypatch.setattr(gate, "LIST_RETRY", 0.1)
    jobs = make_jobs(4)
    async with hostile_api() as api:

        def state() -> str:  # jobs finish once the list has worked again, for a second sweep
            return "SUCCEED" if api.count("list") >= 3 else "WAITING"

        def rows(asked: Asked) -> Reply:
            if api.count("list") == 1:
                return Reply(403, {"error_code": "MSS.403", "error_msg": "denied"})
            data = [api.row(j.job_id, job_state=state()) for j in jobs]
            return Reply(body={"count": len(data), "data": data})

        def show(asked: Asked) -> Reply:
            return api.succeed(asked) if state() == "SUCCEED" else Reply(body={"state": "WAITING"})

        api.list, api.show = rows, show
        with capture_logs() as logs, anyio.fail_after(10):
            summary = await run_jobs(run_config(api.url, tmp_path, LIST), *jobs)
    assert _statuses(tmp_path) == {("SUCCEED", None)}
    assert api.count("list") >= 3
    assert summary.polls.sightings > 0
    assert any(e["event"] == "the list call works again: sweeps resume" for e in logs)


@pytest.mark.anyio
async def test_credentials_refused_while_fetching_fresh_links_stop_the_run(
    tmp_path: Path,
) -> None:
    """Links already expired, and the API refusing every request after the first answers: the
    fresh-links call's fatal AuthError stops the run (exit 2), it is not one ERROR per job."""
    jobs = make_jobs(4)
    async with hostile_api() as api:

        def show(asked: Asked) -> Reply:
            if asked.nth > 1:  # the fresh-links call: credentials refused from now on
                return Reply(401, {"error_code": "APIGW.0301", "error_msg": "key disabled"})
            link = f"{api.url}/files/{asked.job_id}.wav?Expires=1"  # expired: refresh first
            return Reply(body={"state": "SUCCEED", "audio_file_url": link})

        api.show = show
        with anyio.fail_after(10), pytest.raises(AuthError, match="key disabled"):
            await run_jobs(run_config(api.url, tmp_path), *jobs)
    assert not [r for r in read_manifest(tmp_path) if r["status"] == "ERROR"]
