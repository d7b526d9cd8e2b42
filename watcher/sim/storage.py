"""The object-storage side: presigned result links, their verification, and the download route.

Links look like OBS query-string-authenticated URLs on the simulator's own host:

    {base}/obs/metastudio-tts/{job_id}/{file}?AccessKeyId=...&Expires=<unix>&Signature=...

The signature is an HMAC of `GET`, the path and `Expires` under a key private to the simulator,
so a link cannot be extended or pointed at another file. Refusals are 403s with OBS-style XML:
`AccessDenied` ("Request has expired", or missing parameters) and `SignatureDoesNotMatch`
(tampered). A link is valid for `url_ttl` seconds of real wall-clock time.

Every request to this route has its headers recorded (the last `log_size`), so tests can prove
that no API credential ever reaches the storage host. Downloads send `Content-Length`, accept a
single `Range: bytes=...`, and stream large files in chunks.

Links farther away than loopback: `latency` seconds pass before the first byte of every answer
(a link checked, a file found or not), and `bandwidth` caps each answer at that many bytes a
second (paced chunk by chunk), so each connection is as slow as a real one would be.

Injected faults (`watcher.sim.faults`) apply to requests whose link checks out: `expired-link`
refuses it as expired; `short-download` sends half of the body announced, then closes the
connection.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio
from aiohttp import web

from watcher.sim.faults import Faults
from watcher.sim.gateway import same, send_cut_short
from watcher.sim.jobs import Clock
from watcher.sim.media import Payload
from watcher.sim.stats import SimStats

BUCKET = "metastudio-tts"
PREFIX = f"/obs/{BUCKET}/"
ACCESS_KEY_ID = "SIMOBSACCESSKEY00000"
CHUNK_BYTES = 256 * 1024
SMALL_BODY_BYTES = 1 << 20
API = "Storage"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")

Resolver = Callable[[str, str], Payload | None]


@dataclass(frozen=True, slots=True)
class StorageRequest:
    """One request the storage route received: its method, path and every header as sent."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]

    @property
    def header_names(self) -> frozenset[str]:
        """The lower-cased names of the headers sent."""
        return frozenset(name.lower() for name, _ in self.headers)


def xml_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An OBS-style XML error response, with `headers` added."""
    request_id = uuid.uuid4().hex.upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>sim-obs</HostId></Error>"
    )
    return web.Response(
        status=status,
        body=body.encode(),
        content_type="application/xml",
        headers={"x-obs-request-id": request_id, **(headers or {})},
    )


def expired() -> web.Response:
    """The 403 for a link past its `Expires`."""
    return xml_error(403, "AccessDenied", "Request has expired")


class Storage:
    """Signs result links, and serves the files behind them through `handle`.

    `resolve(job_id, name)` gives the file a valid link points at, or None when there is none.
    """

    __slots__ = (
        "_bandwidth",
        "_faults",
        "_key",
        "_latency",
        "_log",
        "_resolve",
        "_stats",
        "_ttl",
        "_wall",
    )

    def __init__(
        self,
        *,
        key: bytes,
        ttl: float,
        wall: Clock,
        resolve: Resolver,
        stats: SimStats,
        faults: Faults,
        log_size: int = 10_000,
        latency: float = 0.0,
        bandwidth: float | None = None,
    ) -> None:
        self._key = key
        self._ttl = ttl
        self._wall = wall
        self._resolve = resolve
        self._stats = stats
        self._faults = faults
        self._log: deque[StorageRequest] = deque(maxlen=log_size)
        self._latency = latency
        self._bandwidth = bandwidth

    def __repr__(self) -> str:
        return f"Storage(ttl={self._ttl}, logged={len(self._log)})"

    @property
    def requests(self) -> list[StorageRequest]:
        """The most recent storage requests, oldest first: a snapshot copy, safe from any thread."""
        return list(self._log)

    def _sign(self, path: str, expires: str) -> str:
        mac = hmac.new(self._key, f"GET\n{path}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def url(self, base: str, job_id: str, name: str) -> str:
        """A link to file `name` of `job_id` under `base` (scheme and host), valid for the TTL."""
        path = f"{PREFIX}{job_id}/{name}"
        expires = str(int(self._wall() + self._ttl))
        signature = self._sign(path, expires)
        return f"{base}{path}?AccessKeyId={ACCESS_KEY_ID}&Expires={expires}&Signature={signature}"

    def refusal(self, path: str, query: Mapping[str, str]) -> web.Response | None:
        """The 403 answer for a link that is missing parts, tampered or expired; else None."""
        access, expires, signature = (
            query.get("AccessKeyId"),
            query.get("Expires"),
            query.get("Signature"),
        )
        if not (access and expires and signature):
            return xml_error(
                403,
                "AccessDenied",
                "Query-string authentication requires the Signature, Expires and AccessKeyId"
                " parameters",
            )
        valid = access == ACCESS_KEY_ID and expires.isascii() and expires.isdigit()
        if not (same(signature, self._sign(path, expires)) and valid):
            return xml_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided."
                " Check your key and signing method.",
            )
        if int(expires) < self._wall():
            return expired()
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Any request under `/obs/`: for GET/HEAD `/obs/{bucket}/{job_id}/{name}` with a valid
        link, the file; otherwise an XML error."""
        self._log.append(
            StorageRequest(request.method, request.path, tuple(request.headers.items()))
        )
        if self._latency > 0:
            await anyio.sleep(self._latency)
        response = await self._answer(request)
        self._stats.record(API, response.status)
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return xml_error(405, "MethodNotAllowed", "The specified method is not allowed.")
        refused = self.refusal(request.path, request.query)
        if refused is not None:
            return refused
        if self._faults.expire_link():
            return expired()
        bucket, _, key = request.path.removeprefix("/obs/").partition("/")
        if bucket != BUCKET:
            return xml_error(404, "NoSuchBucket", "The specified bucket does not exist")
        job_id, _, name = key.partition("/")
        payload = self._resolve(job_id, name)
        if payload is None:
            return xml_error(404, "NoSuchKey", "The specified key does not exist.")
        cut = request.method == "GET" and self._faults.cut_download()
        return await _send(request, payload, cut_short=cut, bandwidth=self._bandwidth)


def _byte_range(header: str | None, length: int) -> tuple[int, int] | None:
    """(start, stop) of a single byte range, None to send it all; ValueError if unsatisfiable."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:  # multiple or foreign ranges: ignoring Range is allowed
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        start, stop = max(0, length - int(last)), length
    else:
        start = int(first)
        stop = length if not last else min(length, int(last) + 1)
    if start >= length or stop <= start:
        raise ValueError(f"range {header!r} is outside {length} bytes")
    return start, stop


async def _send(
    request: web.Request,
    payload: Payload,
    *,
    cut_short: bool = False,
    bandwidth: float | None = None,
) -> web.StreamResponse:
    """The file (or the requested range of it); with `cut_short`, only its first half before the
    connection is closed; with `bandwidth`, at most that many bytes a second."""
    length = payload.length
    try:
        wanted = _byte_range(request.headers.get("Range"), length)
    except ValueError:
        return xml_error(
            416,
            "InvalidRange",
            "The requested range cannot be satisfied.",
            {"Content-Range": f"bytes */{length}"},
        )
    headers = {"Content-Type": payload.content_type, "Accept-Ranges": "bytes"}
    status, start, stop = 200, 0, length
    if wanted is not None:
        status, (start, stop) = 206, wanted
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{length}"
    if cut_short:
        part = payload.chunks(CHUNK_BYTES, start, start + (stop - start) // 2)
        return await send_cut_short(request, status, headers, stop - start, part)
    if stop - start <= SMALL_BODY_BYTES and bandwidth is None:
        body = b"".join(payload.chunks(SMALL_BODY_BYTES, start, stop))
        return web.Response(status=status, body=body, headers=headers)
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = stop - start
    await response.prepare(request)
    if request.method != "HEAD":
        # a tenth of a second's worth at a time under a cap: the pace stays smooth
        size = (
            CHUNK_BYTES if bandwidth is None else max(1024, min(CHUNK_BYTES, int(bandwidth / 10)))
        )
        began, sent = time.monotonic(), 0
        for chunk in payload.chunks(size, start, stop):
            await response.write(chunk)
            sent += len(chunk)
            if bandwidth is not None:
                ahead = began + sent / bandwidth - time.monotonic()
                if ahead > 0:
                    await anyio.sleep(ahead)
    await response.write_eof()
    return response
