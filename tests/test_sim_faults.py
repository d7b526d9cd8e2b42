"""Fault injection in the simulator: each fault on and off, determinism, counts, introspection."""

from __future__ import annotations

import hashlib
import http.client
import os
import selectors
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import orjson
import pytest
from helpers import TEST_PROJECT_ID, ApiSigner, FakeClock, SimFactory, run_in_virtual_time

from watcher._auth import AkSk
from watcher._inputs import Job
from watcher._parse import FILE_FIELDS
from watcher.sim import SimConfig, SimThread, Simulator, serve
from watcher.sim.__main__ import main as sim_main
from watcher.sim.config import DEMO_AK, DEMO_PROJECT_ID, DEMO_SK
from watcher.sim.faults import (
    DEFAULT_SLOW_SECONDS,
    ApiDecision,
    Fault,
    FaultPlan,
    Faults,
    parse_fault,
    plan_from_specs,
)
from watcher.sim.introspect import file_label
from watcher.sim.jobs import JobState
from watcher.sim.media import FileKind

REPO = Path(__file__).resolve().parents[1]
JOB = "fault-job-1"
BIG_JOB = "fault-job-big"
PRELOAD = (
    Job(JOB, {"text": "Words to synthesise for the fault tests."}),
    Job(BIG_JOB, {"text": "big " * 2000}),  # audio over the 1 MB in-memory threshold
)
ROUTES = ("create", "show", "list")
SIGNER = ApiSigner()


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer: status, headers, body (decoded if JSON, and as sent); `broken` when the body
    was cut short."""

    status: int
    headers: Mapping[str, str]
    body: Any
    raw: bytes = b""
    broken: bool = False

    @property
    def outcome(self) -> str:
        """A label for comparing answers: the status and error code or state, or 'cut'."""
        if self.broken:
            return f"{self.status} cut"
        if isinstance(self.body, dict):
            return f"{self.status} {self.body.get('error_code') or self.body.get('state', '')}"
        return str(self.status)


@dataclass(frozen=True, slots=True)
class Client:
    """Signed calls to one simulator's three APIs, and unsigned ones to its other routes."""

    session: aiohttp.ClientSession
    base: str
    signer: ApiSigner = SIGNER

    async def api(
        self, route: str, *, client_timeout: aiohttp.ClientTimeout | None = None, job_id: str = JOB
    ) -> Reply:
        """Call CreateAsyncTtsJob, ShowAsyncTtsJob (of `job_id`) or ShowTtsJob."""
        prefix = f"{self.base}/v1/{TEST_PROJECT_ID}/ttsc"
        method, url, body = {
            "create": ("POST", f"{prefix}/async-jobs", b'{"text":"hi","voice_asset_id":"v"}'),
            "show": ("GET", f"{prefix}/async-jobs/{job_id}", b""),
            "list": ("GET", f"{prefix}/tts-jobs", b""),
        }[route]
        headers = self.signer.headers(method, url, body)
        return await self.fetch(
            method, url, body=body, headers=headers, client_timeout=client_timeout
        )

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        client_timeout: aiohttp.ClientTimeout | None = None,
    ) -> Reply:
        """One request; a body cut short is reported, not raised."""
        options: dict[str, Any] = {"data": body or None, "headers": headers}
        if client_timeout is not None:
            options["timeout"] = client_timeout
        async with self.session.request(method, url, **options) as r:
            try:
                raw = await r.read()
            except aiohttp.ClientPayloadError:
                return Reply(r.status, r.headers, None, broken=True)
            doc = orjson.loads(raw) if r.content_type == "application/json" else raw
            return Reply(r.status, r.headers, doc, raw)

    async def links(self, job_id: str = JOB) -> dict[str, str]:
        """The links of a SUCCEEDed job, by link field."""
        reply = await self.api("show", job_id=job_id)
        assert reply.body["state"] == "SUCCEED", reply.body
        return {k: v for k, v in reply.body.items() if k.endswith("_url")}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session, closed after the test."""
    async with aiohttp.ClientSession() as s:
        yield s


def start(sim_factory: SimFactory, **plan: float) -> SimThread:
    """A simulator with the two jobs preloaded and finished, and these fault rates."""
    return sim_factory(PRELOAD, time_scale=0, faults=FaultPlan(**plan))


def assert_error(reply: Reply, status: int, code: str, message: str) -> None:
    """The documented error body, its request_id equal to X-Request-Id."""
    assert reply.status == status, reply.body
    assert reply.body["error_code"] == code
    assert message in reply.body["error_msg"]
    assert reply.body["request_id"] == reply.headers["X-Request-Id"]
    assert "state" not in reply.body


pytestmark = pytest.mark.anyio


# --- the plan and its specs ------------------------------------------------------------------


def test_plan_defaults_to_no_faults() -> None:
    """Every rate is 0 by default, slow_seconds is 35, and a SimConfig carries no faults."""
    plan = FaultPlan()
    assert plan.active == {}
    assert all(plan.rate(fault) == 0 for fault in Fault)
    assert plan.slow_seconds == DEFAULT_SLOW_SECONDS == 35
    assert SimConfig(project_id="p", credentials=AkSk("a", "s")).faults == plan


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"api_500": 1.5}, "api_500"),
        ({"throttle": -0.1}, "throttle"),
        ({"expired_link": float("nan")}, "expired_link"),
        ({"slow_seconds": -1.0}, "slow_seconds"),
        ({"slow_seconds": float("inf")}, "slow_seconds"),
    ],
)
def test_plan_rejects_bad_values_naming_the_field(fields: dict[str, float], named: str) -> None:
    """A rate outside 0..1 or a bad slow_seconds is a ValueError naming the field."""
    with pytest.raises(ValueError, match=named):
        FaultPlan(**fields)


def test_specs_parse_to_a_plan() -> None:
    """NAME=RATE specs with dashed names set the matching fields; slow_seconds is optional."""
    assert parse_fault("api-500=0.25") == (Fault.API_500, 0.25)
    plan = plan_from_specs(["short-download=1", "unknown-state=0.5"], slow_seconds=0.5)
    assert plan == FaultPlan(short_download=1.0, unknown_state=0.5, slow_seconds=0.5)
    assert plan_from_specs([]) == FaultPlan()
    assert {fault.field for fault in Fault} <= set(FaultPlan.__dataclass_fields__)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("boom=0.5", "one of api-500, api-reset"),
        ("api_500=0.5", "one of api-500"),
        ("api-500", "RATE must be a number from 0 to 1"),
        ("api-500=lots", "RATE must be a number from 0 to 1"),
        ("api-500=1.5", "RATE must be a number from 0 to 1"),
        ("api-500=nan", "RATE must be a number from 0 to 1"),
    ],
)
def test_bad_spec_names_it_and_the_valid_names(spec: str, says: str) -> None:
    """A bad spec's error quotes the spec and says what is valid."""
    with pytest.raises(ValueError, match=says) as caught:
        parse_fault(spec)
    assert repr(spec) in str(caught.value)


def test_repeated_spec_is_an_error() -> None:
    """Giving one fault twice is an error rather than a silent override."""
    with pytest.raises(ValueError, match="more than once"):
        plan_from_specs(["slow=0.1", "slow=0.2"])


def test_cli_rejects_a_bad_fault_with_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`watcher sim --fault bogus=1` exits 2 naming the spec and the valid names."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in list(os.environ):
        if name.startswith(("HUAWEICLOUD_SDK", "CLOUD_SDK", "METASTUDIO_AUTH_TOKEN")):
            monkeypatch.delenv(name)
    assert sim_main(["--fault", "bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "'bogus=1'" in err
    assert "api-500" in err
    assert "expired-link" in err
    assert sim_main(["--fault", "slow=1", "--slow-seconds", "-2"]) == 2
    assert "slow_seconds" in capsys.readouterr().err


# --- decisions -------------------------------------------------------------------------------


def test_decisions_repeat_for_a_seed_and_each_kind_is_independent() -> None:
    """Same seed, same requests: same decisions; other faults' rates never move one kind's."""
    apis = ["ShowAsyncTtsJob", "ShowTtsJob", "CreateAsyncTtsJob"] * 20

    def decisions(plan: FaultPlan, seed: int) -> list[ApiDecision]:
        faults = Faults(plan, seed)
        return [faults.for_api(api) for api in apis]

    plan = FaultPlan(api_500=0.3, slow=0.3)
    first = decisions(plan, 7)
    assert first == decisions(plan, 7)
    assert first != decisions(plan, 8)
    fired = [d.fault is Fault.API_500 for d in first]
    assert 0 < sum(fired) < len(apis)
    noisy = decisions(FaultPlan(api_500=0.3, slow=0.3, auth_401=0.5, api_reset=0.2), 7)
    assert [d.slow for d in noisy] == [d.slow for d in first]
    for was_500, now in zip(fired, noisy, strict=True):
        # auth-401 outranks api-500 and may hide it; api-reset ranks below and cannot
        assert now.fault in (
            (Fault.API_500, Fault.AUTH_401) if was_500 else (None, Fault.AUTH_401, Fault.API_RESET)
        )


def test_rate_one_always_fires_and_rate_zero_never() -> None:
    """Rate 1 fires on every eligible request, rate 0 on none; error-200 only on ShowAsyncTtsJob."""
    always = Faults(FaultPlan(error_200=1.0, expired_link=1.0, short_download=1.0), seed=1)
    assert all(always.for_api("ShowAsyncTtsJob").fault is Fault.ERROR_200 for _ in range(200))
    assert all(always.for_api("ShowTtsJob").fault is None for _ in range(50))
    assert all(always.expire_link() and always.cut_download() for _ in range(200))
    never = Faults(FaultPlan(), seed=1)
    assert not any(never.for_api("ShowAsyncTtsJob").fault for _ in range(200))
    assert not any(never.expire_link() or never.cut_download() for _ in range(200))
    assert set(never.counts().values()) == {0}
    assert always.counts()["error-200"] == 200
    assert always.counts()["expired-link"] == always.counts()["short-download"] == 200


def test_unknown_state_follows_the_id_not_the_seed() -> None:
    """Which jobs end CANCELED depends on the id and rate only, about in proportion to the rate."""
    ids = [f"job-{i}" for i in range(2000)]
    half = [Faults(FaultPlan(unknown_state=0.5), seed=1).canceled(i) for i in ids]
    assert half == [Faults(FaultPlan(unknown_state=0.5), seed=99).canceled(i) for i in ids]
    assert 800 < sum(half) < 1200
    assert all(Faults(FaultPlan(unknown_state=1.0), seed=0).canceled(i) for i in ids)
    assert not any(Faults(FaultPlan(), seed=0).canceled(i) for i in ids)


# --- API faults over HTTP ----------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
async def test_api_500_on_every_route(
    sim_factory: SimFactory, session: aiohttp.ClientSession, route: str
) -> None:
    """api-500 at rate 1: 500 MSS.000000002 'Internal error' with X-Request-Id."""
    running = start(sim_factory, api_500=1.0)
    reply = await Client(session, running.url).api(route)
    assert_error(reply, 500, "MSS.000000002", "Internal error")
    assert len(running.sim.jobs) == len(PRELOAD)  # a refused create creates nothing


@pytest.mark.parametrize("route", ROUTES)
async def test_auth_401_on_every_route(
    sim_factory: SimFactory, session: aiohttp.ClientSession, route: str
) -> None:
    """auth-401 at rate 1: a validly signed request is 401 APIGW.0301 'token expires'."""
    running = start(sim_factory, auth_401=1.0)
    reply = await Client(session, running.url).api(route)
    assert_error(reply, 401, "APIGW.0301", "Incorrect IAM authentication information: token")
    assert reply.body["error_msg"].endswith("token expires")


@pytest.mark.parametrize("route", ROUTES)
async def test_throttle_on_every_route(
    sim_factory: SimFactory, session: aiohttp.ClientSession, route: str
) -> None:
    """throttle at rate 1: 429 APIGW.0308 with the real gateway's wording."""
    running = start(sim_factory, throttle=1.0)
    reply = await Client(session, running.url).api(route)
    assert_error(reply, 429, "APIGW.0308", "The throttling threshold has been reached")
    assert "limit:10,time:1 second" in reply.body["error_msg"]


async def test_throttle_fault_names_the_configured_limit(
    sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    """With a rate_limit set, the injected 429 names that limit."""
    running = sim_factory(PRELOAD, time_scale=0, rate_limit=50, faults=FaultPlan(throttle=1.0))
    reply = await Client(session, running.url).api("list")
    assert "limit:50,time:1 second" in reply.body["error_msg"]


async def test_error_200_only_on_show_job(
    sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    """error-200 at rate 1: ShowAsyncTtsJob is a 200 error body with no state; others are fine."""
    running = start(sim_factory, error_200=1.0)
    client = Client(session, running.url)
    reply = await client.api("show")
    assert_error(reply, 200, "MSS.000000001", "")
    assert (await client.api("list")).body["count"] == len(PRELOAD)
    assert len((await client.api("create")).body["job_id"]) == 32
    assert running.sim.faults.counts()["error-200"] == 1


@pytest.mark.parametrize("route", ROUTES)
async def test_api_reset_cuts_the_answer_short(
    sim_factory: SimFactory, session: aiohttp.ClientSession, route: str
) -> None:
    """api-reset at rate 1: status and Content-Length arrive, then the connection closes early."""
    running = start(sim_factory, api_reset=1.0)
    reply = await Client(session, running.url).api(route)
    assert reply.broken
    assert reply.status == 200
    assert int(reply.headers["Content-Length"]) > 0
    assert len(reply.headers["X-Request-Id"]) == 32
    if route == "create":  # the handler ran: the job exists though its id never arrived
        assert len(running.sim.jobs) == len(PRELOAD) + 1


async def test_api_reset_leaves_the_server_serving(
    sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    """After many cut answers the server still answers on new connections."""
    running = sim_factory(PRELOAD, time_scale=0, faults=FaultPlan(api_reset=0.5), seed=3)
    client = Client(session, running.url)
    replies = [await client.api("list") for _ in range(20)]
    assert {r.broken for r in replies} == {True, False}
    assert all(r.body["count"] == len(PRELOAD) for r in replies if not r.broken)
    assert running.sim.faults.counts()["api-reset"] == sum(r.broken for r in replies)


def test_slow_delays_without_blocking_others() -> None:
    """slow at rate 1, in virtual time: five requests at once, each held 10 s, are all answered
    (the normal answer) exactly 10 s after they were sent: the waits overlap, none queues behind
    another."""
    clock = FakeClock()
    config = SimConfig(
        project_id=TEST_PROJECT_ID,
        credentials=AkSk(SIGNER.ak, SIGNER.sk),
        time_scale=0,
        fail_percent=0,
        faults=FaultPlan(slow=1.0, slow_seconds=10.0),
    )
    answered: list[tuple[float, Reply]] = []

    async def main() -> dict[str, int]:
        async with serve(config, preload=PRELOAD) as running, aiohttp.ClientSession() as session:
            client = Client(session, running.url)

            async def one() -> None:
                reply = await client.api("show")
                answered.append((clock.now, reply))

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for _ in range(5):
                        tg.start_soon(one)
            return running.sim.faults.counts()

    began = clock.now
    counts = run_in_virtual_time(clock, main)
    assert [round(t - began, 6) for t, _ in answered] == [10.0] * 5
    assert [r.body["state"] for _, r in answered] == ["SUCCEED"] * 5
    assert counts["slow"] == 5


async def test_slow_answer_times_the_client_out(
    sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    """A client with a 0.05 s timeout gives up on a slow (0.1 s) answer."""
    running = sim_factory(PRELOAD, time_scale=0, faults=FaultPlan(slow=1.0, slow_seconds=0.1))
    with pytest.raises(TimeoutError):
        await Client(session, running.url).api(
            "list", client_timeout=aiohttp.ClientTimeout(total=0.05)
        )


async def test_rate_zero_injects_nothing(
    sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    """With every rate 0, a mix of API and storage requests is answered normally."""
    running = start(sim_factory)
    client = Client(session, running.url)
    for route in ROUTES * 10:
        reply = await client.api(route)
        assert reply.status == 200
        assert not reply.broken
    links = await client.links()
    for _ in range(10):
        reply = await client.fetch("GET", links["audio_file_url"])
        assert reply.status == 200
        assert not reply.broken
    assert set(running.sim.faults.counts().values()) == {0}


async def test_faults_come_after_authentication(
    sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    """A badly signed request is refused as before and draws no fault."""
    running = start(sim_factory, api_500=1.0, auth_401=1.0)
    client = Client(session, running.url, ApiSigner(sk="wrong"))
    reply = await client.api("list")
    assert_error(reply, 401, "APIGW.0301", "verify aksk signature fail")
    assert set(running.sim.faults.counts().values()) == {0}


async def test_same_seed_same_answers(
    sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    """Two simulators with one seed answer 50 identical requests identically; another seed not."""
    plan = {"api_500": 0.3, "throttle": 0.2, "error_200": 0.3, "auth_401": 0.1, "api_reset": 0.2}

    async def outcomes(seed: int) -> list[str]:
        running = sim_factory(PRELOAD, time_scale=0, seed=seed, faults=FaultPlan(**plan))
        client = Client(session, running.url)
        return [(await client.api(route)).outcome for route in ("show", "list") * 25]

    first, second, other = await outcomes(11), await outcomes(11), await outcomes(12)
    assert first == second
    assert first != other
    assert {"200 SUCCEED", "500 MSS.000000002", "200 MSS.000000001", "200 cut"} <= set(first)


async def test_faults_are_counted(sim_factory: SimFactory, session: aiohttp.ClientSession) -> None:
    """Counts equal the faults answered, the winner only when several fire on one request."""
    running = start(sim_factory, api_500=1.0, auth_401=1.0, slow=1.0, slow_seconds=0)
    client = Client(session, running.url)
    for route in ROUTES * 3:
        assert (await client.api(route)).status == 401
    counts = running.sim.faults.counts()
    assert counts["auth-401"] == 9
    assert counts["slow"] == 9
    assert counts["api-500"] == 0
    assert running.sim.stats.count("ShowTtsJob", 401) == 3


# --- unknown-state -----------------------------------------------------------------------------


async def test_unknown_state_jobs_end_canceled(session: aiohttp.ClientSession) -> None:
    """Picked jobs are reported normally until done, then CANCELED forever, with no files."""
    clock = FakeClock()
    config = SimConfig(
        project_id=TEST_PROJECT_ID,
        credentials=AkSk(SIGNER.ak, SIGNER.sk),
        fail_percent=50,
        faults=FaultPlan(unknown_state=0.5),
    )
    sim = Simulator(config, clock=clock)
    ids = [f"unknown-{i}" for i in range(24)]
    with SimThread(config, sim=sim, preload=[Job(i) for i in ids]) as running:
        client = Client(session, running.url)
        before = [(await client.api("show", job_id=i)).body["state"] for i in ids]
        assert set(before) <= {"WAITING", "PROCESSING"}
        clock.now += 10_000
        expected = [running.sim.expected_state(i) for i in ids]
        assert set(expected) == {JobState.CANCELED, JobState.SUCCEED, JobState.FAILED}
        for _ in range(2):  # and it stays so
            for job_id, want in zip(ids, expected, strict=True):
                body = (await client.api("show", job_id=job_id)).body
                assert body["state"] == want.value
                if want is JobState.CANCELED:
                    assert set(body) == {"state"}
        listed = {d["job_id"]: d for d in (await client.api("list")).body["data"]}
        for job_id, detail in listed.items():
            assert detail["job_state"] == running.sim.expected_state(job_id).value
            if detail["job_state"] == "CANCELED":
                assert detail["files"] == []
                assert "fail_msg" not in detail
        canceled = expected.count(JobState.CANCELED)
        assert running.sim.faults.counts()["unknown-state"] == canceled


async def test_canceled_job_serves_no_files(
    sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    """A job that would have SUCCEEDed but reports CANCELED has no downloadable files."""
    running = start(sim_factory, unknown_state=1.0)
    client = Client(session, running.url)
    assert running.sim.expected_state(JOB) is JobState.CANCELED
    assert (await client.api("show")).body == {"state": "CANCELED"}
    link = running.sim.storage.url(running.url, JOB, FileKind.AUDIO.file_name(JOB))
    reply = await client.fetch("GET", link)
    assert reply.status == 404
    assert b"NoSuchKey" in reply.body


def test_expected_state_without_the_fault() -> None:
    """expected_state is FAILED or SUCCEED by fail_percent when unknown-state is off."""
    creds = AkSk("a", "s")
    failing = Simulator(SimConfig(project_id="p", credentials=creds, fail_percent=100))
    passing = Simulator(SimConfig(project_id="p", credentials=creds, fail_percent=0))
    assert failing.expected_state("any") is JobState.FAILED
    assert passing.expected_state("any") is JobState.SUCCEED


# --- storage faults ----------------------------------------------------------------------------


async def test_expired_link_fault(sim_factory: SimFactory, session: aiohttp.ClientSession) -> None:
    """expired-link at rate 1: a valid link is 403 'Request has expired'; a forged one is not."""
    running = start(sim_factory, expired_link=1.0)
    client = Client(session, running.url)
    links = await client.links()
    reply = await client.fetch("GET", links["audio_file_url"])
    assert reply.status == 403
    assert b"<Code>AccessDenied</Code><Message>Request has expired</Message>" in reply.body
    forged = await client.fetch("GET", links["audio_file_url"].replace("Signature=", "Signature=x"))
    assert b"SignatureDoesNotMatch" in forged.body
    assert running.sim.faults.counts()["expired-link"] == 1


async def drain(response: aiohttp.ClientResponse, sizes: list[int]) -> None:
    """Read the body to its end, noting the size of each piece that arrives."""
    async for chunk in response.content.iter_chunked(1 << 16):
        sizes.append(len(chunk))


@pytest.mark.parametrize("job_id", [JOB, BIG_JOB])
async def test_short_download_fault(
    sim_factory: SimFactory, session: aiohttp.ClientSession, job_id: str
) -> None:
    """short-download at rate 1: full Content-Length, half the bytes, then the connection closes."""
    running = start(sim_factory, short_download=1.0)
    client = Client(session, running.url)
    url = (await client.links(job_id))["audio_file_url"]
    job = running.sim.jobs.get(job_id)
    assert job is not None
    full = running.sim.payload(job, FileKind.AUDIO).length
    received: list[int] = []
    async with session.get(url) as r:
        assert r.status == 200
        assert int(r.headers["Content-Length"]) == full
        with pytest.raises(aiohttp.ClientPayloadError):
            await drain(r, received)
    assert sum(received) == full // 2
    ranged = await client.fetch("GET", url, headers={"Range": "bytes=0-99"})
    assert ranged.status == 206
    assert ranged.broken
    head = await client.fetch("HEAD", url)
    assert head.status == 200
    assert not head.broken
    assert running.sim.faults.counts()["short-download"] == 2


# --- /_sim/ ------------------------------------------------------------------------------------


async def test_sim_stats_route(sim_factory: SimFactory, session: aiohttp.ClientSession) -> None:
    """/_sim/stats needs no credentials, is not counted, and reports requests, statuses, faults."""
    running = start(sim_factory, api_500=1.0)
    client = Client(session, running.url)
    await client.api("list")
    await client.api("show")
    for _ in range(2):
        reply = await client.fetch("GET", f"{running.url}/_sim/stats")
        assert reply.status == 200
        assert reply.body["requests"] == {"ShowTtsJob": 1, "ShowAsyncTtsJob": 1}
        assert reply.body["statuses"] == {"ShowTtsJob 500": 1, "ShowAsyncTtsJob 500": 1}
        assert reply.body["faults"] == {str(f): 2 if f is Fault.API_500 else 0 for f in Fault}
    assert "X-Request-Id" not in reply.headers
    unknown = await client.fetch("GET", f"{running.url}/_sim/nothing")
    assert unknown.body["error_code"] == "APIGW.0101"


async def test_sim_files_route_matches_downloads(
    sim_factory: SimFactory, session: aiohttp.ClientSession
) -> None:
    """/_sim/files/{id} gives each file's size and SHA-256, equal to what its link serves."""
    running = start(sim_factory)
    client = Client(session, running.url)
    links = await client.links()
    reply = await client.fetch("GET", f"{running.url}/_sim/files/{JOB}")
    assert reply.status == 200
    assert reply.body["job_id"] == JOB
    assert reply.body["state"] == reply.body["expected_state"] == "SUCCEED"
    files = reply.body["files"]
    by_field = {FILE_FIELDS[name]: facts for name, facts in files.items()}
    assert set(by_field) == set(links)
    assert {"audio", "info", "srt"} <= set(files)
    for field, url in links.items():
        data = (await client.fetch("GET", url)).raw
        assert by_field[field] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    missing = await client.fetch("GET", f"{running.url}/_sim/files/no-such-job")
    assert missing.status == 404
    assert missing.body == {"error": "no such job", "job_id": "no-such-job"}
    assert "Unknown" not in running.sim.stats.requests()
    assert running.sim.stats.requests() == {"ShowAsyncTtsJob": 1, "Storage": len(links)}


def test_file_labels_are_the_watchers_names() -> None:
    """The sim names each file as watcher._parse.FILE_FIELDS does, by its link field."""
    assert {file_label(kind): kind.field for kind in FileKind} == FILE_FIELDS


# --- the CLI, in another process ---------------------------------------------------------------


def _get(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=5)
    try:
        conn.request("GET", parts.path, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        conn.close()


def test_cli_injects_faults_and_reports_them(tmp_path: Path) -> None:
    """`python -m watcher.sim --fault api-500=1` answers 500s and /_sim/stats counts them."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HUAWEICLOUD_SDK", "CLOUD_SDK", "METASTUDIO_AUTH_TOKEN"))
    }
    env.update(HOME=str(tmp_path), PYTHONPATH=str(REPO))
    argv = ["--port", "0", "--fault", "api-500=1", "--fault", "slow=0", "--slow-seconds", "1"]
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter running our own module
        [sys.executable, "-m", "watcher.sim", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            assert selector.select(20), "the simulator printed no URL"
        url = proc.stdout.readline().strip()
        signer = ApiSigner(DEMO_AK, DEMO_SK, DEMO_PROJECT_ID)
        listing = f"{url}/v1/{DEMO_PROJECT_ID}/ttsc/tts-jobs"
        status, body = _get(listing, signer.headers("GET", listing))
        assert (status, body["error_code"]) == (500, "MSS.000000002")
        status, stats = _get(f"{url}/_sim/stats")
        assert status == 200
        assert stats["faults"]["api-500"] == 1
        assert stats["statuses"] == {"ShowTtsJob 500": 1}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0
    assert "injecting faults api-500=1 (seed 0)" in err
