"""The MetaStudio API client: signed requests over one aiohttp session; answers are read with
a cap and handed to `_parse.py`, which turns them into records.

This is the one boundary where aiohttp's errors become ours (`_errors.py`): error bodies become
`ApiError` (or `AuthError` / `ThrottledError`), no answer at all `TransportError`, and an answer
that came but cannot be used (not JSON, the wrong shape, larger than its cap) `AnswerError`.
Each call signs afresh, so a retry never reuses a stale `X-Sdk-Date`.

A 401 whose `Date` header is minutes away from the local clock says so, and from then on requests
are signed with the server's time (as botocore does after RequestTimeTooSkewed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
from yarl import URL

from watcher._auth import AkSk, Token, canonical_query, sign
from watcher._config import ApiConfig
from watcher._credentials import TokenFile
from watcher._errors import ApiError, AuthError, ThrottledError, TransportError
from watcher._parse import (
    MESSAGE_CHARS,
    AnswerError,
    JobPage,
    JobStatus,
    cut,
    field_text,
    format_time,
    parse_page,
    parse_status,
)
from watcher._retry import parse_retry_after
from watcher._version import __version__

USER_AGENT = f"watcher/{__version__}"
AUTH_CODES = frozenset({"APIGW.0301", "APIG.0301", "MSS.000000004", "MSS.00000004"})
THROTTLE_CODES = frozenset({"APIGW.0308", "APIG.0308"})
SHOW_CAP = 4 * 1024 * 1024  # bytes: one job's answer is a few hundred bytes
PAGE_CAP = 16 * 1024 * 1024  # bytes: a page of 100 jobs is some tens of KiB
SKEW_LIMIT = 300.0  # seconds between a 401's Date and our clock that mean the clock is off


class AnswerTooLarge(AnswerError):
    """An answer larger than its cap (SHOW_CAP, PAGE_CAP); only cap + 1 bytes were read."""


class RetryableAuth(AuthError):
    """Credentials were refused, but something has changed since the request was signed (a
    rotated token file, a clock corrected by the server's `Date`): ask again at once; this
    refusal does not count towards stopping the run."""


def error_for(
    status: int, body: bytes, headers: Mapping[str, str], now: datetime | None = None
) -> ApiError:
    """The exception an error answer stands for (`now`: the local clock, for Retry-After)."""
    request_id = field_text(headers.get("X-Request-Id"))
    code = str(status)
    message = cut(body[: MESSAGE_CHARS * 4].decode("utf-8", "replace")) or f"HTTP {status}"
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        code = field_text(parsed.get("error_code")) or field_text(parsed.get("code")) or code
        message = (
            field_text(parsed.get("error_msg")) or field_text(parsed.get("message")) or message
        )
        request_id = field_text(parsed.get("request_id")) or request_id
    if status == 401 or code in AUTH_CODES:
        return AuthError(status, code, message, request_id)
    if status == 429 or code in THROTTLE_CODES:
        seconds = parse_retry_after(headers.get("Retry-After"), now or datetime.now(UTC))
        return ThrottledError(status, code, message, request_id, seconds)
    return ApiError(status, code, message, request_id)


def server_time(headers: Mapping[str, str]) -> datetime | None:
    """The answer's `Date` header as an aware datetime; None when absent or unreadable."""
    try:
        when = parsedate_to_datetime(headers.get("Date", ""))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def _read_capped(response: aiohttp.ClientResponse, cap: int, what: str) -> bytes:
    """The body of `response`, reading at most `cap` + 1 bytes; AnswerTooLarge past `cap`."""
    too_large = f"{what}: the answer is larger than {cap:,} bytes"
    if response.content_length is not None and response.content_length > cap:
        raise AnswerTooLarge(too_large)
    chunks: list[bytes] = []
    total = 0
    while chunk := await response.content.read(min(1 << 16, cap + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > cap:
            raise AnswerTooLarge(too_large)
    return b"".join(chunks)


def host_header(url: URL) -> str:
    """`Host` as the SDK signs it: with the port only when it is not the scheme's default."""
    host = url.raw_host or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return host if url.is_default_port() else f"{host}:{url.port}"


class MetaStudioClient:
    """Calls of the async TTS API. The caller owns `session` (the API's only session)."""

    def __init__(
        self,
        config: ApiConfig,
        session: aiohttp.ClientSession,
        *,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._session = session
        self._base = URL(config.endpoint.rstrip("/"))
        self._host = host_header(self._base)
        self._wall_clock = wall_clock
        self._timeout = aiohttp.ClientTimeout(total=config.request_timeout)
        creds = config.credentials
        path = creds.path if isinstance(creds, Token) else None
        self._token_file = TokenFile(path) if path is not None else None
        self.skew = 0.0  # seconds the server's clock is ahead of ours, once a 401 showed it
        self.requests = 0

    def _now(self) -> datetime:
        """The time requests are signed with: the local clock, corrected by a known skew."""
        return self._wall_clock() + timedelta(seconds=self.skew)

    def reload_credentials(self) -> bool:
        """Read `--auth-token-file` again if it changed; True when the token is new."""
        return self._token_file is not None and self._token_file.reload()

    def _token_changed(self, used: str) -> bool:
        """Whether the token file (read again now) holds a token other than `used`."""
        self.reload_credentials()
        return self._token_file is not None and self._token_file.token.token != used

    def _headers(
        self, method: str, path: str, query: list[tuple[str, str]], body: bytes
    ) -> dict[str, str]:
        creds = self._config.credentials
        if self._token_file is not None:
            self._token_file.reload()  # cheap when unchanged: one stat
            creds = self._token_file.token
        headers = {
            "Host": self._host,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        if isinstance(creds, Token):
            headers["X-Auth-Token"] = creds.token
            return headers
        assert isinstance(creds, AkSk)
        headers["X-Project-Id"] = self._config.project_id
        return sign(creds, method, path, query, headers, body, self._now())

    def _refused(self, exc: AuthError, headers: Mapping[str, str], signed: datetime) -> AuthError:
        """A 401, with a note when the server's clock disagrees with ours; RetryableAuth when
        the request was signed with a time the server cannot accept and we now know better."""
        server = server_time(headers)
        if server is None:
            return exc
        local_off = (server - self._wall_clock()).total_seconds()
        if abs(local_off) <= SKEW_LIMIT:
            return exc
        note = (
            f"{exc.message} (the local clock is off by {abs(local_off):.0f} s: it is "
            f"{'behind' if local_off > 0 else 'ahead of'} the server's Date "
            f"{server.isoformat(timespec='seconds')})"
        )
        signed_off = (server - signed).total_seconds()
        if isinstance(self._config.credentials, AkSk) and abs(signed_off) > SKEW_LIMIT:
            self.skew = local_off
            return RetryableAuth(exc.status, exc.code, note, exc.request_id)
        return AuthError(exc.status, exc.code, note, exc.request_id)

    async def _call(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        cap: int = SHOW_CAP,
    ) -> tuple[Any, str | None]:
        """Send one signed request; the decoded JSON body and request id of a 2xx answer."""
        query = query or []
        full_path = f"{self._base.raw_path.rstrip('/')}{path}"
        wire = f"{full_path}?{canonical_query(query)}" if query else full_path
        url = self._base.join(URL(wire, encoded=True))
        signed = self._now()
        headers = self._headers(method, full_path, query, body)
        self.requests += 1
        token = headers.get("X-Auth-Token")
        try:
            async with self._session.request(
                method,
                url,
                headers=headers,
                data=body or None,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                payload = await _read_capped(response, cap, f"{method} {path}")
                if response.status >= 300:
                    error = error_for(
                        response.status, payload, response.headers, self._wall_clock()
                    )
                    if isinstance(error, AuthError):
                        error = self._refused(error, response.headers, signed)
                        if token is not None and self._token_changed(token):
                            error = RetryableAuth(
                                error.status,
                                error.code,
                                f"{error.message} (the token file has changed since: retrying)",
                                error.request_id,
                            )
                    raise error
                request_id = field_text(response.headers.get("X-Request-Id"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(cut(f"{method} {path}: {exc.__class__.__name__}: {exc}")) from exc
        try:
            return orjson.loads(payload), request_id
        except orjson.JSONDecodeError as exc:
            raise AnswerError(
                f"{method} {path}: the answer is not JSON ({len(payload)} bytes)"
            ) from exc

    async def show_job(self, job_id: str) -> JobStatus:
        """ShowAsyncTtsJob: the job's state and, once it succeeded, its file links."""
        body, request_id = await self._call(
            "GET", f"/v1/{self._config.project_id}/ttsc/async-jobs/{job_id}"
        )
        if not isinstance(body, dict):
            raise AnswerError(f"ShowAsyncTtsJob {job_id}: the answer is not a JSON object")
        return parse_status(body, request_id)

    async def list_jobs(
        self,
        *,
        offset: int,
        limit: int = 100,
        since: float | None = None,
        until: float | None = None,
    ) -> JobPage:
        """ShowTtsJob: one page of async jobs, newest first, created within [since, until];
        AnswerError when the answer is not a page (`parse_page`)."""
        query = [("job_type", "ASYNC_JOB"), ("limit", str(limit)), ("offset", str(offset))]
        if since is not None:
            query.append(("create_since", format_time(since)))
        if until is not None:
            query.append(("create_until", format_time(until)))
        body, request_id = await self._call(
            "GET", f"/v1/{self._config.project_id}/ttsc/tts-jobs", query, cap=PAGE_CAP
        )
        return parse_page(body, request_id)

    async def create_job(self, fields: Mapping[str, Any]) -> str:
        """CreateAsyncTtsJob: the new job's id; `fields` is the body (text, voice_asset_id...)."""
        body, _ = await self._call(
            "POST", f"/v1/{self._config.project_id}/ttsc/async-jobs", body=orjson.dumps(fields)
        )
        job_id = body.get("job_id") if isinstance(body, dict) else None
        if not isinstance(job_id, str):
            raise TransportError("CreateAsyncTtsJob: answer has no job_id")
        return job_id
