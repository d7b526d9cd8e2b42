"""A hostile object-storage stand-in: a raw asyncio HTTP server on 127.0.0.1:0 where every byte on
the wire is the test's choice, for what aiohttp's own server will not do (lie about Content-Length,
stall after its headers, drip, gzip unasked, loop redirects, never end a body).

    async with HostileStorage() as storage:
        storage.route("/a.wav", throttle(429, "7"), serve(BODY))   # a 429, then the file
        url = storage.url("/a.wav")
        ...
        assert storage.seen[1].headers["range"] == "bytes=100-"

Each request to a path takes that path's next behaviour; the last one repeats. One request per
connection (`Connection: close`). `seen` records every request's method, path and headers
(lower-cased names). Leaving the block closes every connection still open and ends its handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType

HOLD = 30.0  # seconds a stalling handler holds its connection at most (the test ends first)


@dataclass(frozen=True, slots=True)
class Request:
    """One request as received."""

    method: str
    path: str
    headers: dict[str, str]


Behaviour = Callable[[Request, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def head(status: int, headers: dict[str, str] | None = None, length: int | None = None) -> bytes:
    """A status line and headers; `Content-Length: length` unless `length` is None."""
    lines = [f"HTTP/1.1 {status} X", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _hold(reader: asyncio.StreamReader) -> None:
    """Keep the connection open until the client closes it (at most HOLD seconds)."""
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(reader.read(), HOLD)


def serve(
    body: bytes,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    length: int | str | None = "exact",
) -> Behaviour:
    """Send `body` in one write, announced with `length` ("exact": its size; None: no
    Content-Length, the end is the connection's close), then close."""

    async def behave(req: Request, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        announced = len(body) if length == "exact" else length
        assert announced is None or isinstance(announced, int)
        w.write(head(status, headers, announced) + body)
        await w.drain()

    return behave


def stall_after_headers(length: int = 100_000) -> Behaviour:
    """Send a 200's headers announcing `length` bytes, then nothing, holding the connection."""

    async def behave(req: Request, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(head(200, None, length))
        await w.drain()
        await _hold(reader)

    return behave


def silent() -> Behaviour:
    """Accept the request and never answer, holding the connection."""

    async def behave(req: Request, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _hold(reader)

    return behave


def paced(body: bytes, chunk: int, interval: float, *, cut_at: int | None = None) -> Behaviour:
    """Send `body` (full Content-Length) `chunk` bytes every `interval` seconds: a drip with a
    small chunk, a slow but healthy transfer with a large one. `cut_at`: close after that many."""

    async def behave(req: Request, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(head(200, None, len(body)))
        end = len(body) if cut_at is None else cut_at
        for start in range(0, end, chunk):
            w.write(body[start : min(start + chunk, end)])
            await w.drain()
            await asyncio.sleep(interval)

    return behave


def gzipped(body: bytes) -> Behaviour:
    """Send `body` gzipped with `Content-Encoding: gzip`, whatever Accept-Encoding said."""
    return serve(gzip.compress(body), headers={"Content-Encoding": "gzip"})


def throttle(status: int = 429, retry_after: str | None = None) -> Behaviour:
    """A throttling answer: 429 "reduce your request rate", or 503 `SlowDown` (OBS's XML)."""
    code = "SlowDown" if status == 503 else "TooManyRequests"
    xml = f"<Error><Code>{code}</Code><Message>Please reduce your request rate.</Message></Error>"
    headers = {"Content-Type": "application/xml"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return serve(xml.encode(), status=status, headers=headers)


def redirect(location: str, status: int = 302) -> Behaviour:
    """A redirect to `location` (`file:///etc/passwd`, or the path itself for a loop)."""
    return serve(b"", status=status, headers={"Location": location})


def endless(chunk: int = 64 * 1024) -> Behaviour:
    """A 200 with no Content-Length whose body never ends (until the client hangs up)."""

    async def behave(req: Request, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(head(200, None, None))
        block = b"\0" * chunk
        for _ in range(1_000_000):  # bounded: 64 GB at the default chunk
            w.write(block)
            await w.drain()

    return behave


def reset() -> Behaviour:
    """Read the request and close the connection without a word."""

    async def behave(req: Request, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        return

    return behave


_RANGE = re.compile(r"bytes=(\d+)-")


def ranged(
    body: bytes,
    etag: str,
    *,
    cut_at: int | None = None,
    ignore_range: bool = False,
    wrong_range: bool = False,
    wrong_total: bool = False,
) -> Behaviour:
    """An object with an ETag that honours `Range: bytes=N-` + `If-Match` as OBS does (206 with
    Content-Range; 412 when If-Match names another ETag), or ignores Range (`ignore_range`: 200
    with the whole object), or answers a range with the whole object as a 206 (`wrong_range`:
    Content-Range from byte 0), or names another total in its Content-Range (`wrong_total`).
    `cut_at`: close after that many bytes of the object."""

    async def behave(req: Request, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        match = req.headers.get("if-match")
        found = _RANGE.fullmatch(req.headers.get("range", ""))
        headers = {"ETag": etag, "Accept-Ranges": "bytes"}
        if match is not None and match != etag:
            w.write(head(412, headers, 0))
            await w.drain()
            return
        start = int(found[1]) if found and not ignore_range else 0
        partial = bool(start)
        if wrong_range and partial:
            start = 0
        if partial:
            total = len(body) + 1000 if wrong_total else len(body)
            headers["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
        w.write(head(206 if partial else 200, headers, len(body) - start))
        end = len(body) if cut_at is None else max(cut_at, start)
        w.write(body[start:end])
        await w.drain()

    return behave


@dataclass
class HostileStorage:
    """The server; see the module docstring."""

    routes: dict[str, list[Behaviour]] = field(default_factory=dict)
    seen: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def route(self, path: str, *behaviours: Behaviour) -> str:
        """Answer requests to `path` with `behaviours` in turn (the last repeats); its URL."""
        self.routes[path] = list(behaviours)
        return self.url(path)

    def url(self, path: str) -> str:
        """The http URL of `path` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def requests(self, path: str) -> list[Request]:
        """The requests seen for `path`."""
        return [r for r in self.seen if r.path == path]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HOLD)
            first, *lines = raw.decode("latin-1").split("\r\n")
            method, target, _ = first.split(" ", 2)
            headers = {
                k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines if x)
            }
            request = Request(method, target.split("?", 1)[0], headers)
            self.seen.append(request)
            behaviours = self.routes.get(request.path) or [serve(b"not here", status=404)]
            behaviour = behaviours.pop(0) if len(behaviours) > 1 else behaviours[0]
            await behaviour(request, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client hung up: what these behaviours are for
        except asyncio.CancelledError:
            pass  # only `__aexit__` cancels a handler: the test is over
        finally:
            writer.close()
            self._tasks.discard(task)

    async def __aenter__(self) -> HostileStorage:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
