"""The simulator over real loopback HTTP: auth, errors, the three APIs, storage links, limits."""

from __future__ import annotations

import io
import socket
import time
import wave
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import anyio
import orjson
import pytest
from helpers import SIM_FAST, TEST_PROJECT_ID, ApiSigner

from watcher._auth import AkSk, Token
from watcher._inputs import Job
from watcher.sim import SimConfig, SimThread, Simulator, serve
from watcher.sim.gateway import Throttle
from watcher.sim.media import FileKind, files_of

pytestmark = pytest.mark.anyio

API_CREDENTIAL_HEADERS = {
    "authorization",
    "x-auth-token",
    "x-security-token",
    "x-sdk-date",
    "x-project-id",
}


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer: status, decoded body, headers."""

    status: int
    body: Any
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Api:
    """Signed calls to one simulator."""

    session: aiohttp.ClientSession
    base: str
    signer: ApiSigner

    def url(self, route: str, query: Mapping[str, object] | None = None) -> str:
        project = self.signer.project_id
        url = f"{self.base}/v1/{project}/ttsc/{route}"
        return f"{url}?{urlencode(query)}" if query else url

    async def call(
        self,
        method: str,
        url: str,
        *,
        doc: object = None,
        body: bytes | None = None,
        signer: ApiSigner | None = None,
        now: datetime | None = None,
        headers: Mapping[str, str] | None = None,
        send_body: bytes | None = None,
    ) -> Reply:
        """Sign `body` (or `doc` as JSON) and send `send_body` if given, else the signed body."""
        data = body if body is not None else (b"" if doc is None else orjson.dumps(doc))
        signed = (signer or self.signer).headers(method, url, data, now=now)
        signed.update(headers or {})
        payload = data if send_body is None else send_body
        async with self.session.request(method, url, data=payload or None, headers=signed) as r:
            raw = await r.read()
            decoded = orjson.loads(raw) if r.content_type == "application/json" else raw.decode()
            return Reply(r.status, decoded, r.headers)

    async def create(self, **fields: object) -> str:
        doc = {"text": "Hello from the simulator.", "voice_asset_id": "voice-1", **fields}
        reply = await self.call("POST", self.url("async-jobs"), doc=doc)
        assert reply.status == 200, reply.body
        job_id: str = reply.body["job_id"]
        return job_id

    async def show(self, job_id: str) -> Reply:
        return await self.call("GET", self.url(f"async-jobs/{job_id}"))

    async def wait_done(self, job_id: str) -> dict[str, Any]:
        with anyio.fail_after(5):
            for _ in range(500):
                reply = await self.show(job_id)
                assert reply.status == 200, reply.body
                if reply.body["state"] in ("SUCCEED", "FAILED"):
                    done: dict[str, Any] = reply.body
                    return done
                await anyio.sleep(0.005)
        raise AssertionError(f"{job_id} did not finish")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session, closed after the test."""
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def api(sim: SimThread, session: aiohttp.ClientSession, signer: ApiSigner) -> Api:
    """Signed calls to the `sim` fixture."""
    return Api(session, sim.url, signer)


def assert_error(reply: Reply, status: int, code: str, message: str = "") -> None:
    """The documented error body, with request_id equal to the X-Request-Id header."""
    assert reply.status == status, reply.body
    assert reply.body["error_code"] == code
    assert message in reply.body["error_msg"]
    assert reply.body["request_id"] == reply.headers["X-Request-Id"]
    assert len(reply.headers["X-Request-Id"]) == 32


async def test_signed_request_is_accepted(api: Api) -> None:
    """A request signed with watcher._auth.sign creates a job and carries X-Request-Id."""
    reply = await api.call("POST", api.url("async-jobs"), doc={"text": "hi", "voice_asset_id": "v"})
    assert reply.status == 200
    assert len(reply.body["job_id"]) == 32
    assert len(reply.headers["X-Request-Id"]) == 32


async def test_tampered_signature_is_refused(api: Api) -> None:
    """A changed signature is 401 APIGW.0301 'verify aksk signature fail'."""
    url = api.url("tts-jobs")
    signed = api.signer.headers("GET", url)
    auth = signed["Authorization"]
    bad = auth[:-1] + ("0" if auth[-1] != "0" else "1")
    reply = await api.call("GET", url, headers={"Authorization": bad})
    assert_error(reply, 401, "APIGW.0301", "verify aksk signature fail")


async def test_other_access_key_is_refused(api: Api) -> None:
    """Another AK (signed correctly with its own SK) is 401 APIGW.0301."""
    other = replace(api.signer, ak="OTHERAK0000000000000", sk="other-sk")
    reply = await api.call("GET", api.url("tts-jobs"), signer=other)
    assert_error(reply, 401, "APIGW.0301", "verify aksk signature fail")


async def test_wrong_secret_key_is_refused(api: Api) -> None:
    """The right AK signed with a wrong SK is 401 APIGW.0301."""
    reply = await api.call("GET", api.url("tts-jobs"), signer=replace(api.signer, sk="wrong"))
    assert_error(reply, 401, "APIGW.0301")


async def test_stale_sdk_date_is_refused(api: Api) -> None:
    """An X-Sdk-Date 20 minutes old (over the 15-minute skew) is 401 APIGW.0301."""
    stale = datetime.now(UTC) - timedelta(minutes=20)
    reply = await api.call("GET", api.url("tts-jobs"), now=stale)
    assert_error(reply, 401, "APIGW.0301")


async def test_date_within_skew_is_accepted(api: Api) -> None:
    """An X-Sdk-Date 5 minutes off is still accepted."""
    reply = await api.call("GET", api.url("tts-jobs"), now=datetime.now(UTC) + timedelta(minutes=5))
    assert reply.status == 200


async def test_body_changed_after_signing_is_refused(api: Api) -> None:
    """The body is part of the signature: sending another body is 401."""
    signed = orjson.dumps({"text": "one", "voice_asset_id": "v"})
    sent = orjson.dumps({"text": "two", "voice_asset_id": "v"})
    reply = await api.call("POST", api.url("async-jobs"), body=signed, send_body=sent)
    assert_error(reply, 401, "APIGW.0301")


async def test_query_changed_after_signing_is_refused(api: Api) -> None:
    """The query is part of the signature: signing limit=5 and sending limit=6 is 401."""
    signed = api.signer.headers("GET", api.url("tts-jobs", {"limit": 5}))
    async with api.session.get(api.url("tts-jobs", {"limit": 6}), headers=signed) as r:
        assert r.status == 401


async def test_non_ascii_signature_is_refused(api: Api) -> None:
    """A signature with non-ASCII characters is a plain 401, not a server error."""
    url = api.url("tts-jobs")
    signed = api.signer.headers("GET", url)
    auth = signed["Authorization"].rsplit("=", 1)[0] + "=été"
    reply = await api.call("GET", url, headers={"Authorization": auth})
    assert_error(reply, 401, "APIGW.0301")


async def test_missing_authorization_is_refused(api: Api) -> None:
    """No credentials at all is 401 APIGW.0301 'x-auth-token not found'."""
    async with api.session.get(api.url("tts-jobs")) as r:
        body = await r.json()
        assert r.status == 401
        assert body["error_code"] == "APIGW.0301"
        assert body["error_msg"].endswith("x-auth-token not found")
        assert body["request_id"] == r.headers["X-Request-Id"]


async def test_unsigned_required_header_is_refused(api: Api) -> None:
    """A signature that leaves out x-sdk-date is refused."""
    url = api.url("tts-jobs")
    signed = api.signer.headers("GET", url)
    auth = signed["Authorization"].replace(";x-sdk-date", "")
    reply = await api.call("GET", url, headers={"Authorization": auth})
    assert_error(reply, 401, "APIGW.0301")


async def test_project_header_mismatch_is_403(api: Api) -> None:
    """An X-Project-Id other than the path's is 403 MSS.000000004."""
    reply = await api.call(
        "GET", api.url("tts-jobs"), signer=replace(api.signer, project_id="f" * 32)
    )
    assert_error(reply, 403, "MSS.000000004")


async def test_other_project_in_path_is_403(api: Api) -> None:
    """A consistent but foreign project id (path and header) is 403 MSS.000000004."""
    other = Api(api.session, api.base, replace(api.signer, project_id="e" * 32))
    reply = await other.call("GET", other.url("tts-jobs"))
    assert_error(reply, 403, "MSS.000000004")


async def test_token_mode(session: aiohttp.ClientSession) -> None:
    """With a token configured, X-Auth-Token is checked and AK/SK is not what it accepts."""
    config = SimConfig(
        project_id=TEST_PROJECT_ID, credentials=Token("tok-123"), time_scale=SIM_FAST
    )
    async with serve(config) as running:
        url = f"{running.url}/v1/{TEST_PROJECT_ID}/ttsc/tts-jobs"
        async with session.get(url, headers={"X-Auth-Token": "tok-123"}) as r:
            assert r.status == 200
            assert (await r.json())["count"] == 0
        async with session.get(url, headers={"X-Auth-Token": "tok-999"}) as r:
            body = await r.json()
            assert r.status == 401
            assert body["error_msg"].endswith("decrypt token fail")
        async with session.get(url) as r:
            assert r.status == 401
            assert (await r.json())["error_msg"].endswith("x-auth-token not found")
        async with session.get(url, headers=ApiSigner().headers("GET", url)) as r:
            assert r.status == 401


async def test_security_token_must_match(session: aiohttp.ClientSession) -> None:
    """Temporary credentials need the matching X-Security-Token."""
    creds = AkSk("TMPAK", "tmp-sk", "sec-token")
    config = SimConfig(project_id=TEST_PROJECT_ID, credentials=creds, time_scale=SIM_FAST)
    async with serve(config) as running:
        good = Api(session, running.url, ApiSigner("TMPAK", "tmp-sk", security_token="sec-token"))
        assert (await good.call("GET", good.url("tts-jobs"))).status == 200
        bad = replace(good.signer, security_token="other")
        assert (await good.call("GET", good.url("tts-jobs"), signer=bad)).status == 401
        missing = replace(good.signer, security_token=None)
        assert (await good.call("GET", good.url("tts-jobs"), signer=missing)).status == 401


async def test_unknown_job_is_400(api: Api) -> None:
    """An unknown job id is 400 MSS.000000003."""
    assert_error(await api.show("0" * 32), 400, "MSS.000000003", "0" * 32)


async def test_unknown_path_is_404_with_error_body(api: Api) -> None:
    """A path that is no API is 404 APIGW.0101 with a request id."""
    assert_error(await api.call("GET", api.url("nothing-here")), 404, "APIGW.0101")
    assert_error(await api.call("DELETE", api.url("tts-jobs")), 404, "APIGW.0101")


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"voice_asset_id": "v"}, "text"),
        ({"text": "", "voice_asset_id": "v"}, "text"),
        ({"text": "hi"}, "voice_asset_id"),
        ({"text": "hi", "voice_asset_id": "v", "audio_format": "OGG"}, "audio_format"),
        ({"text": "hi", "voice_asset_id": "v", "speed": 300}, "speed"),
        ({"text": "hi", "voice_asset_id": "v", "volume": 50}, "volume"),
        ({"text": "hi", "voice_asset_id": "v", "priority": True}, "priority"),
        ({"text": "hi", "voice_asset_id": "v", "gen_srt": "yes"}, "gen_srt"),
        (["not", "an", "object"], "object"),
    ],
)
async def test_bad_create_body_names_the_field(api: Api, doc: object, field: str) -> None:
    """A bad CreateAsyncTtsJob body is 400 MSS.000000003 naming the field."""
    reply = await api.call("POST", api.url("async-jobs"), doc=doc)
    assert_error(reply, 400, "MSS.000000003", field)


async def test_job_lifecycle_and_its_files(api: Api, sim: SimThread) -> None:
    """A job ends SUCCEED with links to exactly the files it asked for."""
    job_id = await api.create(need_timestamp=True, gen_srt=True, audio_format="MP3", priority=0)
    first = await api.show(job_id)
    assert first.body["state"] in ("WAITING", "PROCESSING", "SUCCEED")
    done = await api.wait_done(job_id)
    job = sim.sim.jobs.get(job_id)
    assert job is not None
    assert done["state"] == "SUCCEED"
    assert set(done) == {"state"} | {kind.field for kind in files_of(job)}
    assert {"audio_file_url", "audio_info_file_url", "audio_srt_file_url"} <= set(done)
    assert done["audio_file_url"].endswith(".wav", 0, done["audio_file_url"].index("?"))


async def test_failed_job_reports_code_and_message(session: aiohttp.ClientSession) -> None:
    """A FAILED job shows state, code and message, and no links."""
    config = SimConfig(
        project_id=TEST_PROJECT_ID,
        credentials=AkSk("AK", "SK"),
        time_scale=0,
        fail_percent=100,
    )
    async with serve(config, preload=[Job("example-1")]) as running:
        api = Api(session, running.url, ApiSigner("AK", "SK"))
        reply = await api.show("example-1")
        assert reply.body["state"] == "FAILED"
        assert reply.body["code"].startswith("MSS.0000000")
        assert reply.body["message"]
        listed = await api.call("GET", api.url("tts-jobs"))
        assert listed.body["data"][0]["fail_msg"] == reply.body["message"]
        assert listed.body["data"][0]["files"] == []


async def test_list_is_newest_first_and_pages(api: Api) -> None:
    """ShowTtsJob counts all jobs and pages them newest first."""
    ids = [await api.create(text=f"job number {i}") for i in range(5)]
    reply = await api.call("GET", api.url("tts-jobs", {"limit": 2}))
    assert reply.body["count"] == 5
    assert [d["job_id"] for d in reply.body["data"]] == ids[::-1][:2]
    reply = await api.call("GET", api.url("tts-jobs", {"limit": 2, "offset": 4}))
    assert [d["job_id"] for d in reply.body["data"]] == ids[:1]
    default = await api.call("GET", api.url("tts-jobs"))
    assert len(default.body["data"]) == 5
    detail = default.body["data"][0]
    assert detail["text_length"] == len("job number 4")
    assert detail["job_type"] == "ASYNC_JOB"
    assert detail["audio_format"] == "WAV"
    assert detail["create_time"].endswith("Z")


async def test_list_filters(api: Api) -> None:
    """job_id, create_since/until and job_type filter the list."""
    ids = [await api.create() for _ in range(3)]
    by_id = await api.call("GET", api.url("tts-jobs", {"job_id": ids[1]}))
    assert [d["job_id"] for d in by_id.body["data"]] == [ids[1]]
    missing = await api.call("GET", api.url("tts-jobs", {"job_id": "nope"}))
    assert missing.body == {"count": 0, "data": []}
    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    past = "2020-01-01T00:00:00Z"
    since = await api.call("GET", api.url("tts-jobs", {"create_since": future}))
    assert since.body["count"] == 0
    until = await api.call("GET", api.url("tts-jobs", {"create_until": past}))
    assert until.body["count"] == 0
    window = await api.call(
        "GET", api.url("tts-jobs", {"create_since": past, "create_until": future})
    )
    assert window.body["count"] == 3
    audition = await api.call("GET", api.url("tts-jobs", {"job_type": "AUDITION"}))
    assert audition.body["count"] == 0
    asynchronous = await api.call("GET", api.url("tts-jobs", {"job_type": "ASYNC_JOB"}))
    assert asynchronous.body["count"] == 3


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"offset": -1},
        {"create_since": "yesterday"},
        {"job_type": "BATCH"},
    ],
)
async def test_list_rejects_bad_parameters(api: Api, query: dict[str, object]) -> None:
    """Out-of-range or malformed list parameters are 400 MSS.000000003 naming the parameter."""
    reply = await api.call("GET", api.url("tts-jobs", query))
    assert_error(reply, 400, "MSS.000000003", next(iter(query)))


async def test_storage_serves_the_files(api: Api, sim: SimThread) -> None:
    """Each link serves the job's bytes with the right Content-Length and Content-Type."""
    job_id = await api.create(text="Downloadable words here.", gen_srt=True, need_timestamp=True)
    done = await api.wait_done(job_id)
    job = sim.sim.jobs.get(job_id)
    assert job is not None
    assert done["state"] == "SUCCEED"
    async with aiohttp.ClientSession() as downloads:
        for kind in (FileKind.AUDIO, FileKind.SRT, FileKind.INFO):
            async with downloads.get(done[kind.field]) as r:
                data = await r.read()
                assert r.status == 200
                assert r.headers["Content-Length"] == str(len(data))
                assert r.content_type == kind.content_type
                assert data == sim.sim.payload(job, kind).read()
        with wave.open(io.BytesIO(sim.sim.payload(job, FileKind.AUDIO).read())) as w:
            assert w.getnframes() > 0
        async with downloads.get(done["audio_file_url"], headers={"Range": "bytes=8-15"}) as r:
            assert r.status == 206
            assert r.headers["Content-Range"].startswith("bytes 8-15/")
            assert await r.read() == b"WAVEfmt "


StorageSim = tuple[SimThread, list[float]]


@pytest.fixture
def storage_sim() -> Iterator[StorageSim]:
    """A simulator whose wall clock a test can move forward, with one preloaded job."""
    offset = [0.0]
    config = SimConfig(
        project_id=TEST_PROJECT_ID,
        credentials=AkSk("AK", "SK"),
        time_scale=0,
        fail_percent=0,
        url_ttl=60,
    )
    sim = Simulator(config, wall=lambda: time.time() + offset[0])
    with SimThread(config, sim=sim, preload=[Job("stored-1", {"text": "big " * 2000})]) as running:
        yield running, offset


async def _link(session: aiohttp.ClientSession, running: SimThread, field: str) -> str:
    api = Api(session, running.url, ApiSigner("AK", "SK"))
    reply = await api.show("stored-1")
    assert reply.body["state"] == "SUCCEED"
    link: str = reply.body[field]
    return link


async def test_large_file_streams_whole(
    storage_sim: StorageSim, session: aiohttp.ClientSession
) -> None:
    """A file over the in-memory threshold streams with its full Content-Length."""
    running, _ = storage_sim
    link = await _link(session, running, "audio_file_url")
    async with session.get(link) as r:
        size = 0
        async for chunk in r.content.iter_chunked(1 << 16):
            size += len(chunk)
        assert r.status == 200
        assert size == int(r.headers["Content-Length"]) > 1_000_000


async def test_expired_link_is_403_xml(
    storage_sim: StorageSim, session: aiohttp.ClientSession
) -> None:
    """A link past its TTL is 403 AccessDenied 'Request has expired' in OBS XML."""
    running, offset = storage_sim
    link = await _link(session, running, "audio_srt_file_url")
    async with session.get(link) as r:
        assert r.status == 200
    offset[0] = 61.0
    async with session.get(link) as r:
        text = await r.text()
        assert r.status == 403
        assert r.content_type == "application/xml"
        assert text.startswith("<?xml")
        assert "<Code>AccessDenied</Code><Message>Request has expired</Message>" in text
        assert "<RequestId>" in text


async def test_tampered_link_is_403_xml(
    storage_sim: StorageSim, session: aiohttp.ClientSession
) -> None:
    """Changing Expires, the signature or the file, or dropping the signature, is 403 XML."""
    running, _ = storage_sim
    link = await _link(session, running, "audio_srt_file_url")
    expires = link.split("Expires=")[1].split("&")[0]
    forged = [
        link.replace(f"Expires={expires}", f"Expires={int(expires) + 3600}"),
        link[:-2] + ("AA" if not link.endswith("AA") else "BB"),
        link.replace(".srt?", ".wav?"),
        link.split("&Signature=")[0] + "&Signature=%C3%A9t%C3%A9",
    ]
    for url in forged:
        async with session.get(url) as r:
            assert r.status == 403
            assert "<Code>SignatureDoesNotMatch</Code>" in await r.text()
    async with session.get(link.split("?")[0]) as r:
        assert r.status == 403
        assert "<Code>AccessDenied</Code>" in await r.text()


async def test_storage_records_headers(
    storage_sim: StorageSim, session: aiohttp.ClientSession
) -> None:
    """Storage records each request's headers, so a leak of API credentials would show."""
    running, _ = storage_sim
    link = await _link(session, running, "audio_srt_file_url")
    async with session.get(link) as r:
        assert r.status == 200
    records = running.sim.storage.requests
    assert len(records) == 1
    assert not records[0].header_names & API_CREDENTIAL_HEADERS
    async with session.get(link, headers={"X-Auth-Token": "leak"}) as r:
        assert r.status == 200
    assert "x-auth-token" in running.sim.storage.requests[-1].header_names


async def test_rate_limit_answers_429(session: aiohttp.ClientSession) -> None:
    """Over the per-API rate limit, requests are 429 APIGW.0308 naming the limit."""
    config = SimConfig(
        project_id=TEST_PROJECT_ID, credentials=AkSk("AK", "SK"), time_scale=SIM_FAST, rate_limit=3
    )
    frozen = Simulator(config, clock=lambda: 100.0)  # the window never slides during the test
    async with serve(config, sim=frozen) as running:
        api = Api(session, running.url, ApiSigner("AK", "SK"))
        replies = [await api.call("GET", api.url("tts-jobs")) for _ in range(5)]
        assert [r.status for r in replies[:3]] == [200] * 3
        assert_error(replies[3], 429, "APIGW.0308", "policy user over ratelimit,limit:3,time:1")
        other_api = await api.call("GET", api.url("async-jobs/unknown"))
        assert other_api.status == 400  # a separate window per API
        assert running.sim.stats.count("ShowTtsJob", 429) == 2


def test_throttle_window_slides() -> None:
    """The sliding window admits again once the oldest request is a window old."""
    now = [0.0]
    throttle = Throttle(2, lambda: now[0])
    assert [throttle.admit("A") for _ in range(3)] == [True, True, False]
    assert throttle.admit("B")
    now[0] = 0.999
    assert not throttle.admit("A")
    now[0] = 1.0
    assert throttle.admit("A")
    assert "limit:2,time:1 second" in throttle.message()
    half = Throttle(0.5, lambda: now[0])
    assert (half.capacity, half.window) == (1, 2.0)


async def test_stats_count_requests(api: Api, sim: SimThread) -> None:
    """Stats count each answered request by API and status."""
    await api.create()
    await api.show("missing")
    await api.call("GET", api.url("tts-jobs"))
    stats = sim.sim.stats
    assert stats.requests() == {"CreateAsyncTtsJob": 1, "ShowAsyncTtsJob": 1, "ShowTtsJob": 1}
    assert stats.count("ShowAsyncTtsJob", 400) == 1


async def test_preloaded_jobs_resolve(session: aiohttp.ClientSession) -> None:
    """Preloaded ids are known, keep their text, and have subtitle and timestamp files."""
    config = SimConfig(
        project_id=TEST_PROJECT_ID, credentials=AkSk("AK", "SK"), time_scale=0, fail_percent=0
    )
    jobs = [Job("demo-a", {"text": "Twelve chars"}), Job("demo-b"), Job("demo-a")]
    async with serve(config, preload=jobs) as running:
        assert len(running.sim.jobs) == 2
        api = Api(session, running.url, ApiSigner("AK", "SK"))
        shown = await api.show("demo-a")
        assert {"audio_file_url", "audio_srt_file_url", "audio_info_file_url"} <= set(shown.body)
        listed = await api.call("GET", api.url("tts-jobs", {"job_id": "demo-a"}))
        assert listed.body["data"][0]["text_length"] == len("Twelve chars")
        other = await api.call("GET", api.url("tts-jobs", {"job_id": "demo-b"}))
        assert 40 <= other.body["data"][0]["text_length"] < 400


def test_sim_thread_stops_and_releases_its_port(sim_config: SimConfig) -> None:
    """Leaving SimThread closes the listener; its url is unavailable afterwards."""
    thread = SimThread(sim_config)
    with thread as running:
        host, port = running.url.removeprefix("http://").split(":")
        socket.create_connection((host, int(port)), timeout=1).close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=1).close()
    with pytest.raises(RuntimeError, match="not running"):
        _ = thread.url
