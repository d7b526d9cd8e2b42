"""The engine's algorithms, exactly, on a fake clock: the poller over the real API gate, whose
client is a scripted fake, on an event loop whose time is that clock (helpers.VirtualTimeLoop).

No test here waits in real time: every sleep, rate-limit slot and timeout of the engine passes at
once in virtual time, so the gaps asserted are the engine's own, to the nanosecond.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import pairwise
from typing import Any, cast

import anyio
import pytest
from helpers import FakeClock, virtual_time

from watcher._admission import Admission
from watcher._client import MetaStudioClient
from watcher._config import PollPolicy
from watcher._download import Finished
from watcher._errors import ApiError, AuthError, InputError
from watcher._gate import ApiGate
from watcher._inputs import Job
from watcher._manifest import JobResult
from watcher._outage import Outage
from watcher._parse import JobPage, JobStatus
from watcher._pending import Pending
from watcher._poller import Poller
from watcher._retry import RetryPolicy
from watcher._schedule import Watched
from watcher._sweep_plan import SLACK
from watcher._sweeper import Sweeper

T0 = 1000.0  # the fake clock's start
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # the wall clock at T0
NS = 1e-9  # float sums of virtual time are exact to this
WAITING = JobStatus("WAITING")
DONE = JobStatus("SUCCEED", links={"audio": "http://127.0.0.1:9/a.wav"})
# single GETs only, no rate limit to speak of, retries quick: each test sets what it is about
POLICY = PollPolicy(
    cadence=3.0,
    rate=1000.0,
    strategy="single",
    retry=RetryPolicy(attempts=4, base=0.01, cap=0.05),
    auth_pause=5.0,
    outage_timeout=None,
)

Answer = Callable[[str, float], JobStatus | BaseException]


@pytest.fixture
def clock() -> FakeClock:
    """The run's monotonic clock, and the event loop's."""
    return FakeClock(T0)


@pytest.fixture
def anyio_backend(clock: FakeClock) -> tuple[str, dict[str, Any]]:
    """These tests run on asyncio in virtual time: `clock` is the loop's clock."""
    return virtual_time(clock)


class FakeApi:
    """Stands in for MetaStudioClient: `answer(job_id, now)` is what ShowAsyncTtsJob returns (or
    raises); `calls` records (time, job id) of every request, in order."""

    def __init__(self, clock: FakeClock, answer: Answer) -> None:
        self._clock, self._answer = clock, answer
        self.calls: list[tuple[float, str]] = []

    async def show_job(self, job_id: str) -> JobStatus:
        self.calls.append((self._clock(), job_id))
        answer = self._answer(job_id, self._clock())
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def list_jobs(self, **query: Any) -> JobPage:
        raise AssertionError("these tests poll singly")

    def times(self, job_id: str) -> list[float]:
        """When `job_id` was asked, in order."""
        return [t for t, j in self.calls if j == job_id]


def succeeds_at(at: float) -> Answer:
    """Every job WAITING until `at`, SUCCEED from then on."""
    return lambda job_id, now: DONE if now >= at else WAITING


@dataclass
class Engine:
    """A Poller over the real ApiGate and Outage, all on `clock`, with a FakeApi client, fed by
    the real Admission and Pending registry; a Sweeper (never run: it only makes the list-mode
    decision) unless the strategy is `single`."""

    clock: FakeClock
    api: FakeApi
    policy: PollPolicy
    poller: Poller = field(init=False)
    gate: ApiGate = field(init=False)
    pending: Pending = field(init=False)
    sweeper: Sweeper | None = field(init=False)
    downloads: list[Finished] = field(default_factory=list)
    results: list[JobResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        outage = Outage("the API", timeout=None, clock=self.clock, rng=random.Random(1))
        client = cast(MetaStudioClient, self.api)
        self.gate = ApiGate(client, self.policy, outage, clock=self.clock)
        self._downloads = anyio.create_memory_object_stream[Finished](math.inf)
        self._results = anyio.create_memory_object_stream[JobResult](math.inf)
        wall_clock = lambda: EPOCH + timedelta(seconds=self.clock() - T0)  # noqa: E731
        self.pending = Pending(self.gate.counts, wall_clock=wall_clock)
        self.admission = Admission(
            self.pending, self.policy, self._results[0].clone(), clock=self.clock
        )
        self.poller = Poller(
            self.gate,
            self.policy,
            self.pending,
            self._downloads[0],
            self._results[0],
            clock=self.clock,
            wall_clock=wall_clock,
            rng=random.Random(0),
        )
        self.sweeper = None
        if self.policy.strategy != "single":
            self.sweeper = Sweeper(self.gate, self.pending, self.poller, self.policy)

    def job(self, job_id: str) -> Watched:
        """The pending record of `job_id` (it must be pending)."""
        w = self.pending.get(job_id)
        assert w is not None, job_id
        return w

    async def run(
        self, inputs: AsyncIterator[Job | InputError], stop: anyio.Event | None = None
    ) -> None:
        """Run the poller to its end (bounded in virtual time) and collect what it sent out."""
        try:
            with anyio.fail_after(3600):
                await self.poller.run(stop, (partial(self.admission.run, inputs),))
        finally:  # the poller closed the sending ends, whatever happened
            with self._downloads[1] as downloads, self._results[1] as results:
                self.downloads = [item async for item in downloads]
                self.results = [item async for item in results]


def engine(clock: FakeClock, answer: Answer, **policy: Any) -> Engine:
    """An Engine whose API answers with `answer`, its policy POLICY with `policy` changed."""
    return Engine(clock, FakeApi(clock, answer), replace(POLICY, **policy))


async def jobs(*ids: str, then: anyio.Event | None = None) -> AsyncIterator[Job | InputError]:
    """The input: these job ids, then (with `then`) nothing more until `then` is set."""
    for job_id in ids:
        yield Job(job_id)
    if then is not None:
        await then.wait()


def gaps(times: list[float]) -> list[float]:
    """The gaps between consecutive times, rounded to the nanosecond."""
    return [round(b - a, 9) for a, b in pairwise(times)]


@pytest.mark.anyio
async def test_the_gap_between_two_polls_of_a_job_is_exactly_the_cadence(
    clock: FakeClock,
) -> None:
    """One job WAITING until T0 + 10: asked at T0, +3, +6, +9 and +12, each gap exactly 3 s."""
    e = engine(clock, succeeds_at(T0 + 10))
    await e.run(jobs("a"))
    assert e.api.times("a") == pytest.approx([T0, T0 + 3, T0 + 6, T0 + 9, T0 + 12], abs=NS)
    assert gaps(e.api.times("a")) == [3.0] * 4
    assert [d.seen.job_id for d in e.downloads] == ["a"] and e.results == []
    assert e.poller.stats.effective_cadence == pytest.approx(3.0, abs=NS)


@pytest.mark.anyio
async def test_a_short_budget_goes_to_the_most_overdue_job_first(clock: FakeClock) -> None:
    """Three jobs, a cadence of 1 s, but a budget of one request every 2 s (rate 0.5 at full
    headroom): the jobs take turns in strict rotation, each asked every 6 s; none is skipped or
    asked twice in a row."""
    e = engine(clock, succeeds_at(T0 + 30), cadence=1.0, rate=0.5, headroom=1.0)
    await e.run(jobs("a", "b", "c"))
    order = [j for _, j in e.api.calls]
    assert order[:15] == ["a", "b", "c"] * 5
    assert gaps([t for t, _ in e.api.calls][:15]) == [2.0] * 14
    for job_id in "abc":
        assert set(gaps(e.api.times(job_id))) == {6.0}
    assert sorted(d.seen.job_id for d in e.downloads) == ["a", "b", "c"]


@pytest.mark.anyio
async def test_a_job_not_final_by_its_deadline_is_a_timeout_at_the_deadline(
    clock: FakeClock,
) -> None:
    """job_timeout 10 s, the job WAITING for ever: asked at T0, +3, +6, +9, then TIMEOUT at
    exactly T0 + 10 (not at the next poll), with its last state; the run ends there."""
    e = engine(clock, lambda job_id, now: WAITING, job_timeout=10.0)
    await e.run(jobs("a"))
    assert gaps(e.api.times("a")) == [3.0] * 3
    [result] = e.results
    assert result.status == "TIMEOUT" and result.state == "WAITING" and result.polls == 4
    assert result.error is not None and result.error.code == "TIMEOUT"
    assert result.elapsed_s == pytest.approx(10.0, abs=NS)
    assert clock.now == pytest.approx(T0 + 10, abs=NS)


@pytest.mark.parametrize(("base", "gap"), [(0.01, 3.0), (20.0, None)])
@pytest.mark.anyio
async def test_a_retry_is_never_sooner_than_the_cadence(
    clock: FakeClock, base: float, gap: float | None
) -> None:
    """A transient 500, then the answer: the retry waits max(cadence, the jittered backoff), so a
    10 ms backoff still waits the 3 s cadence and a 20 s one waits its own (seeded) delay."""
    retry = RetryPolicy(attempts=4, base=base, cap=max(base, 0.05))
    answers: list[JobStatus | BaseException] = [ApiError(500, "MSS.000000002", "internal", None)]
    answers.append(DONE)
    e = engine(clock, lambda job_id, now: answers.pop(0), retry=retry)
    await e.run(jobs("a"))
    expected = gap if gap is not None else max(3.0, retry.delay(1, random.Random(0)))
    assert expected > 3.0 or gap == 3.0
    assert gaps(e.api.times("a")) == [round(expected, 9)]
    assert e.poller.stats.retries == 1 and [d.seen.job_id for d in e.downloads] == ["a"]


@pytest.mark.anyio
async def test_transient_faults_are_retried_up_to_the_attempts_then_the_job_is_an_error(
    clock: FakeClock,
) -> None:
    """A 500 for ever under 4 attempts: four GETs a cadence apart (the backoff is shorter), three
    retries, then one ERROR line with the API's code; a 400 is an ERROR at once, not retried."""
    internal = ApiError(500, "MSS.000000002", "internal", None)
    bad = ApiError(400, "MSS.000000003", "bad request", None)
    e = engine(clock, lambda job_id, now: internal if job_id == "a" else bad)
    await e.run(jobs("a", "b"))
    assert gaps(e.api.times("a")) == [3.0] * 3 and len(e.api.times("b")) == 1
    assert (e.poller.stats.retries, e.poller.stats.errors) == (3, 5)
    codes = {r.job_id: (r.status, r.error.code if r.error else None) for r in e.results}
    assert codes == {"a": ("ERROR", "MSS.000000002"), "b": ("ERROR", "MSS.000000003")}


@pytest.mark.anyio
async def test_a_refusal_pauses_every_request_for_the_auth_pause(clock: FakeClock) -> None:
    """The first request is refused (401): nothing is sent for auth_pause (5 s), then both jobs
    are asked, and the refused one is not charged (it succeeds, no retry counted)."""
    refused = iter([True])

    def answer(job_id: str, now: float) -> JobStatus | BaseException:
        if next(refused, False):
            return AuthError(401, "APIGW.0301", "refused", None)
        return DONE

    e = engine(clock, answer)
    await e.run(jobs("a", "b"))
    (first, _), *rest = e.api.calls
    assert first == T0
    assert min(t for t, _ in rest) >= T0 + 5.0 - NS
    assert sorted(j for _, j in rest) == ["a", "b"]
    assert sorted(d.seen.job_id for d in e.downloads) == ["a", "b"]
    assert e.poller.stats.retries == 0 and e.gate.counts.refused == 1


@pytest.mark.anyio
async def test_auth_failures_refusals_in_a_row_stop_the_run(clock: FakeClock) -> None:
    """Every request refused: the run stops with AuthError after exactly auth_failures (3)
    requests, one auth_pause apart, and writes nothing for the job."""
    e = engine(clock, lambda job_id, now: AuthError(401, "APIGW.0301", "refused", None))
    with pytest.raises(ExceptionGroup) as raised:
        await e.run(jobs("a"))
    assert raised.group_contains(AuthError)
    assert gaps([t for t, _ in e.api.calls]) == [5.0, 5.0]


@pytest.mark.anyio
async def test_stop_ends_the_run_at_once_and_writes_nothing_more(clock: FakeClock) -> None:
    """`stop` set at T0 + 4 while a job waits for its next poll (due at T0 + 6) and the input is
    still open: the run returns at T0 + 4, with the job unwritten and no request after the stop."""
    e = engine(clock, lambda job_id, now: WAITING)
    stop = anyio.Event()

    async def press() -> None:
        await anyio.sleep(4.0)
        stop.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(press)
        await e.run(jobs("a", then=anyio.Event()), stop)
    assert clock.now == pytest.approx(T0 + 4, abs=NS)
    assert e.api.times("a") == pytest.approx([T0, T0 + 3], abs=NS)
    assert e.results == [] and e.downloads == []


@pytest.mark.anyio
async def test_auto_switches_to_sweeps_above_capacity_and_back_below_half(
    clock: FakeClock,
) -> None:
    """`auto` with capacity rate x cadence = 4 jobs: four pending jobs are polled singly, a fifth
    turns sweeps on; they stay on down to three listable jobs and go off at two (capacity / 2), at
    which the two left are asked singly at once."""
    e = engine(clock, lambda job_id, now: WAITING, strategy="auto", rate=1.0, cadence=4.0)
    more, rest = anyio.Event(), anyio.Event()
    seen: dict[str, bool] = {}

    async def inputs() -> AsyncIterator[Job | InputError]:
        async for job in jobs("a", "b", "c", "d", then=more):
            yield job
        seen["four"] = e.poller.sweeping
        async for job in jobs("e", then=rest):
            yield job

    async def drive() -> None:
        await anyio.sleep(10.0)  # the four are asked singly meanwhile
        more.set()
        await anyio.sleep(1.0)
        seen["five"] = e.poller.sweeping
        polls_before = len(e.api.calls)
        await anyio.sleep(10.0)
        seen["no single GETs while sweeping"] = len(e.api.calls) == polls_before
        for job_id, expect in (("a", True), ("b", True), ("c", False)):
            await e.poller.observe(e.job(job_id), DONE, clock(), listed=True)
            seen[f"after {job_id}"] = e.poller.sweeping == expect
        switched_off = clock()
        await anyio.sleep(3.0)
        seen["asked at once"] = {j for t, j in e.api.calls if t >= switched_off} == {"d", "e"}
        rest.set()
        for job_id in ("d", "e"):
            await e.poller.observe(e.job(job_id), DONE, clock(), listed=False)

    async with anyio.create_task_group() as tg:
        tg.start_soon(drive)
        await e.run(inputs())
    assert seen == {
        "four": False,
        "five": True,
        "no single GETs while sweeping": True,
        "after a": True,
        "after b": True,
        "after c": True,
        "asked at once": True,
    }
    assert sorted(d.seen.job_id for d in e.downloads) == list("abcde")


@pytest.mark.anyio
async def test_the_sweep_window_covers_every_listable_pending_job(clock: FakeClock) -> None:
    """Jobs of unknown creation time: the window starts list_lookback (plus SLACK) before the
    earliest admission, open-ended; once every creation time is known it is those times +- SLACK."""
    e = engine(clock, lambda job_id, now: WAITING, list_lookback=3600.0)
    sweeper = Sweeper(e.gate, e.pending, e.poller, e.policy)
    windows: list[tuple[float | None, float | None]] = []
    done = anyio.Event()

    async def inputs() -> AsyncIterator[Job | InputError]:
        yield Job("a")
        await anyio.sleep(100.0)
        yield Job("b")
        await anyio.sleep(1.0)
        windows.append(sweeper.window())
        e.job("a").create_time = EPOCH.timestamp() + 50
        windows.append(sweeper.window())
        e.job("b").create_time = EPOCH.timestamp() + 70
        windows.append(sweeper.window())
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(e.run, inputs(), done)
    epoch = EPOCH.timestamp()
    assert windows == [
        (epoch - 3600 - SLACK, None),  # a was admitted at T0 (the wall clock's EPOCH)
        (pytest.approx(epoch + 100 - 3600 - SLACK), None),  # b's admission is the earliest
        (epoch + 50 - SLACK, epoch + 70 + SLACK),
    ]


@pytest.mark.anyio
async def test_a_list_call_that_stops_working_hands_every_job_to_single_gets(
    clock: FakeClock,
) -> None:
    """`list` strategy: a job admitted while the list call works gets no single GET; once the
    gate finds the list call unusable, `Sweeper.review` turns sweeps off and the job is asked
    singly at once, then every cadence."""
    e = engine(clock, succeeds_at(T0 + 20), strategy="list")
    seen: dict[str, object] = {}

    async def drive() -> None:
        await anyio.sleep(10.0)
        seen["sweeping"], seen["asked"] = e.poller.sweeping, list(e.api.calls)
        e.gate.list_failed("403 for the list")
        assert e.sweeper is not None
        e.sweeper.review()
        seen["after"] = e.poller.sweeping

    async with anyio.create_task_group() as tg:
        tg.start_soon(drive)
        await e.run(jobs("a"))
    assert seen == {"sweeping": True, "asked": [], "after": False}
    assert gaps(e.api.times("a")) == [3.0] * 4
    assert e.api.times("a")[0] == pytest.approx(T0 + 10, abs=NS)


@pytest.mark.anyio
async def test_error_codes_at_the_end_of_a_batch_get_one_more_cadence_not_a_minute(
    clock: FakeClock,
) -> None:
    """Twenty jobs a sweep finds FAILED at once, with nothing else left: their code lookups (one
    GET each at 2 requests/s) get one cadence, then the rest keep code FAILED, so the run ends
    a cadence after the sweep rather than ten seconds (or CODE_WAIT) later."""
    ids = [f"j{i:02d}" for i in range(20)]
    coded = JobStatus("FAILED", code="MSS.000000001", message="no voice")

    def answer(job_id: str, now: float) -> JobStatus:
        return coded if now >= T0 + 1 else WAITING

    e = engine(clock, answer, rate=2.0 / POLICY.headroom)  # paced at exactly 2/s

    async def sweep_finds_them_failed() -> None:
        await anyio.sleep(1.0)
        for w in e.pending:
            await e.poller.observe(w, JobStatus("FAILED", message="no voice"), clock(), listed=True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sweep_finds_them_failed)
        await e.run(jobs(*ids))
    assert sorted(r.job_id or "" for r in e.results) == ids
    codes = [r.error.code for r in e.results if r.error is not None]
    assert 1 <= codes.count("MSS.000000001") < 20 and "FAILED" in codes
    assert clock() <= T0 + 1 + POLICY.cadence + 0.5


@pytest.mark.anyio
async def test_a_succeeded_job_leaves_the_poller_as_a_frozen_snapshot(clock: FakeClock) -> None:
    """SUCCEED on the third poll (T0 + 6): the download pool gets a snapshot of three polls,
    first read at the wall clock's EPOCH, final at T0 + 6, and the job is no longer pending."""
    e = engine(clock, succeeds_at(T0 + 6))
    await e.run(jobs("a"))
    [finished] = e.downloads
    seen = finished.seen
    assert (seen.job_id, seen.state, seen.polls, seen.first_poll_at) == ("a", "SUCCEED", 3, EPOCH)
    assert (seen.started, seen.final) == pytest.approx((T0, T0 + 6), abs=NS)
    assert e.pending.get("a") is None and e.pending.done
