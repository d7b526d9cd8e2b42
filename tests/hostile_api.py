"""A hostile MetaStudio API on 127.0.0.1:0, scripted per test, and a TCP proxy that can drop.

`HostileApi` answers ShowAsyncTtsJob and ShowTtsJob the way tests tell it to: each of `show` and
`list` is a function from the request (and how many times that job or page was asked) to a
`Reply` (its body JSON-encoded by the stdlib, so 10**30 goes out as written), so a test can
answer 403, an HTML page, a JSON list, impossible times, any Retry-After, oversized bodies,
200s with only `code`/`message`, or 401s with a far-off `Date`. By default
every job SUCCEEDs on its first GET with one audio link (a real 0.1 s WAV served by the same
server) and the list shows every job asked about so far. Signatures are not checked unless a
test's function checks them.

`DroppingProxy` forwards TCP to a target after resetting the first `drop` connections it accepts
(all of them when `drop` is None): what a dead proxy or load balancer does to a client.
"""

from __future__ import annotations

import asyncio
import io
import json
import wave
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def tiny_wav(seconds: float = 0.1, rate: int = 8000) -> bytes:
    """A valid mono 16-bit WAV of silence."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * int(seconds * rate))
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer: `body` is JSON-encoded unless it is bytes; `chunked` sends it without a
    Content-Length, in 64 KiB chunks (so only reading it tells its size)."""

    status: int = 200
    body: Any = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    chunked: bool = False


@dataclass(frozen=True, slots=True)
class Asked:
    """What the server was asked: `api` is "show" or "list"; `job_id` for show."""

    api: str
    job_id: str | None
    query: Mapping[str, str]
    headers: Mapping[str, str]
    nth: int  # 1 for the first time this job (show) or this offset (list) was asked


ShowScript = Callable[[Asked], Reply]
ListScript = Callable[[Asked], Reply]


class HostileApi:
    """The scriptable server; `url` while it runs, `asked` every request in order."""

    WAV = tiny_wav()

    def __init__(self) -> None:
        self.url = ""
        self.asked: list[Asked] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self.show: ShowScript = self.succeed
        self.list: ListScript = self.list_all

    def count(self, api: str) -> int:
        """How many requests `api` ("show", "list") got."""
        return sum(1 for a in self.asked if a.api == api)

    def succeed(self, asked: Asked) -> Reply:
        """The default show: SUCCEED with an audio link."""
        return Reply(body=self.succeeded_body(asked.job_id or ""))

    def succeeded_body(self, job_id: str) -> dict[str, Any]:
        """A ShowAsyncTtsJob body for a job that succeeded."""
        return {"state": "SUCCEED", "audio_file_url": f"{self.url}/files/{job_id}.wav"}

    def list_all(self, asked: Asked) -> Reply:
        """The default list: one page with every job shown so far, SUCCEED."""
        jobs = sorted({a.job_id for a in self.asked if a.job_id})
        rows = [self.row(j) for j in jobs]
        return Reply(body={"count": len(rows), "data": rows})

    def row(self, job_id: str, **fields: Any) -> dict[str, Any]:
        """A ShowTtsJob row for a job that succeeded, with `fields` overriding."""
        link = {"audio_file_url": f"{self.url}/files/{job_id}.wav"}
        return {"job_id": job_id, "job_state": "SUCCEED", "files": [link], **fields}

    async def _show(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job_id"]
        return await self._answer(request, self.show(self._asked(request, "show", job_id)))

    async def _list(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, self.list(self._asked(request, "list", None)))

    def _asked(self, request: web.Request, api: str, job_id: str | None) -> Asked:
        key = (api, job_id if job_id is not None else request.query.get("offset", "0"))
        self._counts[key] += 1
        asked = Asked(api, job_id, dict(request.query), dict(request.headers), self._counts[key])
        self.asked.append(asked)
        return asked

    @staticmethod
    async def _answer(request: web.Request, reply: Reply) -> web.StreamResponse:
        # stdlib json: it writes what orjson refuses (integers past 64 bits, for one)
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        headers = {"Content-Type": "application/json", **reply.headers}
        if not reply.chunked:
            return web.Response(status=reply.status, body=body, headers=headers)
        response = web.StreamResponse(status=reply.status, headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        with suppress(ConnectionError):  # the client may stop reading at its cap
            for start in range(0, len(body), 1 << 16):
                await response.write(body[start : start + (1 << 16)])
            await response.write_eof()
        return response

    async def _file(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self.WAV, headers={"Content-Type": "audio/wav"})

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_get("/v1/{project}/ttsc/async-jobs/{job_id}", self._show)
        app.router.add_get("/v1/{project}/ttsc/tts-jobs", self._list)
        app.router.add_get("/files/{name}", self._file)
        return app


@asynccontextmanager
async def hostile_api() -> AsyncIterator[HostileApi]:
    """A HostileApi listening on 127.0.0.1 (a free port) for the block's duration."""
    api = HostileApi()
    runner = web.AppRunner(api.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    port = server.sockets[0].getsockname()[1]
    api.url = f"http://127.0.0.1:{port}"
    try:
        yield api
    finally:
        await runner.cleanup()


class DroppingProxy:
    """TCP from 127.0.0.1:`port` to `target`; resets the first `drop` connections (None: all)."""

    def __init__(self, target_host: str, target_port: int, drop: int | None) -> None:
        self._target = (target_host, target_port)
        self.drop = drop
        self.dropped = 0
        self.forwarded = 0
        self.port = 0

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with suppress(ConnectionError, OSError):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.drop is None or self.dropped < self.drop:
            self.dropped += 1
            writer.transport.abort()  # a reset, as a dead proxy gives
            return
        self.forwarded += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))


@asynccontextmanager
async def dropping_proxy(target_url: str, drop: int | None) -> AsyncIterator[DroppingProxy]:
    """A DroppingProxy in front of `target_url` (http://host:port)."""
    host, _, port = target_url.removeprefix("http://").partition(":")
    proxy = DroppingProxy(host, int(port), drop)
    server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        with suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)
