"""The API gate's bookkeeping: outages, pauses, refusals and the list call, over a fake client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from helpers import FAST, FakeClock, SimFactory, make_jobs, run_config

from watcher._client import MetaStudioClient, RetryableAuth
from watcher._errors import ApiError, AuthError, ThrottledError, TransportError
from watcher._gate import ApiGate, Deferred, ListUnavailable
from watcher._outage import Outage
from watcher._parse import AnswerError, JobPage, JobStatus


class FakeClient:
    """Answers each call with what `script` returns or raises for (api, key)."""

    def __init__(self, script: Callable[[str, str], object]) -> None:
        self.script = script
        self.calls: list[tuple[str, str]] = []

    def _answer(self, api: str, key: str) -> Any:
        self.calls.append((api, key))
        answer = self.script(api, key)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def show_job(self, job_id: str) -> JobStatus:
        return cast(JobStatus, self._answer("show", job_id))

    async def list_jobs(self, **query: Any) -> JobPage:
        return cast(JobPage, self._answer("list", str(query["offset"])))


def _gate(script: Callable[[str, str], object], **policy: Any) -> tuple[ApiGate, FakeClient]:
    clock = FakeClock()
    client = FakeClient(script)
    outage = Outage("the API", timeout=60, base=1.0, cap=4.0, clock=clock, sleep=clock.sleep)
    gate = ApiGate(
        cast(MetaStudioClient, client),
        replace(FAST, **policy),
        outage,
        clock=clock,
        sleep=clock.sleep,
    )
    return gate, client


def _500() -> ApiError:
    return ApiError(500, "MSS.000000002", "internal", None)


@pytest.mark.anyio
async def test_one_jobs_repeated_500s_are_its_own_not_an_outage() -> None:
    """The same job answered 500 again and again: each is raised for the job to pay for."""
    gate, _ = _gate(lambda api, key: _500())
    for _ in range(6):
        with pytest.raises(ApiError):
            await gate.show("job-a")
    assert not gate.outage.down


@pytest.mark.anyio
async def test_500s_across_jobs_and_dead_connections_are_an_outage() -> None:
    """500s for three different jobs, or three resets: the API is down, nobody is charged."""
    gate, _ = _gate(lambda api, key: _500())
    for job in ("a", "b"):
        with pytest.raises(ApiError):
            await gate.show(job)
    with pytest.raises(Deferred):
        await gate.show("c")
    assert gate.outage.down and gate.outage.describe()
    reset, _ = _gate(lambda api, key: TransportError("reset"))
    for _ in range(2):
        with pytest.raises(TransportError):
            await reset.show("same-job")
    with pytest.raises(Deferred):
        await reset.show("same-job")


@pytest.mark.anyio
async def test_a_garbled_answer_is_no_outage() -> None:
    """An answer that is not JSON came from somewhere: the job pays, the API stays up."""
    gate, _ = _gate(lambda api, key: AnswerError("not JSON"))
    for job in "abcde":
        with pytest.raises(AnswerError):
            await gate.show(job)
    assert not gate.outage.down


@pytest.mark.anyio
async def test_a_long_retry_after_is_capped_and_shown_as_the_pause() -> None:
    """Retry-After 3600 with --max-pause 5: deferred by 5 s, pause_left says so."""
    throttled = ThrottledError(429, "APIGW.0308", "slow", None, 3600.0)
    gate, _ = _gate(lambda api, key: throttled, max_pause=5.0)
    with pytest.raises(Deferred) as deferred:
        await gate.show("a")
    assert deferred.value.delay == 5.0
    assert gate.pause_left() == pytest.approx(5.0)
    assert gate.counts.throttled == 1


@pytest.mark.anyio
async def test_refusals_in_a_row_stop_every_later_request() -> None:
    """`auth_failures` refusals in a row raise AuthError, and so does every call after it,
    without sending."""
    refused = AuthError(401, "APIGW.0301", "bad", "r")
    gate, client = _gate(lambda api, key: refused, auth_failures=3)
    for _ in range(2):
        with pytest.raises(Deferred):
            await gate.show("a")
    with pytest.raises(AuthError):
        await gate.show("a")
    sent = len(client.calls)
    with pytest.raises(AuthError):
        await gate.fresh("b")
    assert len(client.calls) == sent


@pytest.mark.anyio
async def test_refusals_fixed_since_are_excused_but_not_forever() -> None:
    """A refusal the client could fix (rotated token, corrected clock) is not counted, up to
    a bound, after which such refusals count too and stop the run."""
    retry = RetryableAuth(401, "APIGW.0301", "clock is off", None)
    gate, client = _gate(lambda api, key: retry, auth_failures=2)
    outcomes: list[BaseException] = []
    for _ in range(50):
        try:
            await gate.show("a")
        except (Deferred, AuthError) as exc:
            outcomes.append(exc)
            if isinstance(exc, AuthError):
                break
    assert type(outcomes[-1]) is AuthError
    assert 10 < len(client.calls) < 50


@pytest.mark.anyio
async def test_a_forbidden_list_is_given_up_once_and_tried_again_later() -> None:
    """A 403 on the list: ListUnavailable at once and without sending while unusable; once
    the retry time comes, one page is tried again and a good one makes it usable."""
    answers: list[object] = [ApiError(403, "MSS.403", "forbidden", None)]
    gate, client = _gate(lambda api, key: answers[0])
    with pytest.raises(ListUnavailable):
        await gate.page(offset=0, limit=100, since=None, until=None)
    assert not gate.list_usable
    with pytest.raises(ListUnavailable):
        await gate.page(offset=0, limit=100, since=None, until=None)
    assert len(client.calls) == 1
    retry_in = gate.list_retry_in()
    assert retry_in is not None and retry_in > 60
    clock = gate._clock
    assert isinstance(clock, FakeClock)
    clock.now += retry_in
    answers[0] = JobPage(0, ())
    await gate.page(offset=0, limit=1, since=None, until=None)
    assert gate.list_usable and gate.list_retry_in() is None


@pytest.mark.anyio
async def test_fresh_links_wait_out_throttling_instead_of_failing_the_download() -> None:
    """A refresh answered 429 twice, then SUCCEED: it returns the links; forever 429: raised."""
    answers = iter([ThrottledError(429, "APIGW.0308", "slow", None, 1.0)] * 2)
    done = JobStatus("SUCCEED", {"audio": "http://x/a.wav"})
    gate, client = _gate(lambda api, key: next(answers, done))
    assert (await gate.fresh("a")) == done
    assert len(client.calls) == 3
    always, _ = _gate(lambda api, key: ThrottledError(429, "APIGW.0308", "slow", None, 1.0))
    with pytest.raises(ThrottledError):
        await always.fresh("a")


@pytest.mark.anyio
async def test_a_local_clock_20_minutes_slow_is_corrected_from_the_servers_date(
    sim_factory: SimFactory,
) -> None:
    """Against the simulator, a client whose clock is 20 min slow is refused once (the server's
    Date shows the gap), then signs with the server's time and is answered."""
    job = make_jobs(1)[0]
    sim = sim_factory([job])
    config = run_config(sim.url, Path("unused")).api
    slow = lambda: datetime.now(UTC) - timedelta(minutes=20)  # noqa: E731
    async with aiohttp.ClientSession() as session:
        client = MetaStudioClient(config, session, wall_clock=slow)
        outage = Outage("the API")
        gate = ApiGate(client, FAST, outage)
        with pytest.raises(Deferred, match=r"clock is off by 1[12]\d\d s: it is behind"):
            await gate.show(job.job_id)
        reading = await gate.show(job.job_id)
    assert reading.status.state in ("WAITING", "PROCESSING", "SUCCEED")
    assert 1190 < client.skew < 1210
    assert sim.sim.stats.count("ShowAsyncTtsJob", 401) == 1
