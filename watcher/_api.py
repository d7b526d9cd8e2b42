"""The MetaStudio API client: signed requests over one aiohttp session, parsed into records.

This is the one boundary where aiohttp's errors become ours (`errors.py`): error bodies become
`ApiError` (or `AuthError` / `ThrottledError`), no answer at all `TransportError`, and an answer
that came but cannot be used (not JSON, the wrong shape, larger than its cap) `AnswerError`.
Each call signs afresh, so a retry never reuses a stale `X-Sdk-Date`.

Nothing on the wire is trusted: every field is checked where it is parsed, and one odd field
affects the one job it belongs to (a list row whose time or state cannot be read is left to that
job's own single GET), never the run. Messages taken from answers are cut to `MESSAGE_CHARS`.
A 401 whose `Date` header is minutes away from the local clock says so, and from then on requests
are signed with the server's time (as botocore does after RequestTimeTooSkewed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
from watcher._retry import parse_retry_after
from watcher._version import __version__

USER_AGENT = f"watcher/{__version__}"
AUTH_CODES = frozenset({"APIGW.0301", "APIG.0301", "MSS.000000004", "MSS.00000004"})
THROTTLE_CODES = frozenset({"APIGW.0308", "APIG.0308"})
MESSAGE_CHARS = 300  # an answer's message is cut to this many characters for logs and manifest
SHOW_CAP = 4 * 1024 * 1024  # bytes: one job's answer is a few hundred bytes
PAGE_CAP = 16 * 1024 * 1024  # bytes: a page of 100 jobs is some tens of KiB
SKEW_LIMIT = 300.0  # seconds between a 401's Date and our clock that mean the clock is off
# Creation times outside this range (2000-01-01 .. 2100-01-01, epoch seconds) are not believed.
EARLIEST, LATEST = 946684800.0, 4102444800.0
# ShowAsyncTtsJob's link fields, by the name the watcher gives each kind of file.
FILE_FIELDS = {
    "audio": "audio_file_url",
    "info": "audio_info_file_url",
    "srt": "audio_srt_file_url",
    "action": "audio_action_file_url",
}


@dataclass(frozen=True, slots=True)
class JobStatus:
    """One answer of ShowAsyncTtsJob.

    `failed` is true for state FAILED and for any answer whose `code`/`message` say it failed;
    `links` maps a file kind (audio, info, srt, action) to its URL, for the links present.
    """

    state: str
    links: Mapping[str, str] = field(default_factory=dict)
    code: str | None = None
    message: str | None = None
    request_id: str | None = None

    @property
    def failed(self) -> bool:
        """Whether the job has failed, by its state or by the code and message beside it."""
        return self.state == "FAILED" or self.code not in (None, "", "0") or bool(self.message)

    @property
    def final(self) -> bool:
        """Whether the job will not change any more (unknown states count as final)."""
        return self.failed or self.state not in ("WAITING", "PROCESSING")


class AnswerError(TransportError):
    """Something answered, but not with a usable answer: not JSON, not the documented shape, or
    larger than its cap. The service is reachable (this is no outage); trying again may pass."""


class AnswerTooLarge(AnswerError):
    """An answer larger than its cap (SHOW_CAP, PAGE_CAP); only cap + 1 bytes were read."""


class RetryableAuth(AuthError):
    """Credentials were refused, but something has changed since the request was signed (a
    rotated token file, a clock corrected by the server's `Date`): ask again at once; this
    refusal does not count towards stopping the run."""


def cut(text: str, limit: int = MESSAGE_CHARS) -> str:
    """`text` on one line, at most `limit` characters (an ellipsis marks a cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _text(value: object) -> str | None:
    """A code or message field as short text; None when absent or empty."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    if isinstance(value, str | int):
        return cut(str(value))
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return cut(orjson.dumps(value, default=str).decode()) if value else None


def _links(fields: Mapping[str, Any]) -> dict[str, str]:
    return {
        kind: url
        for kind, name in FILE_FIELDS.items()
        if isinstance(url := fields.get(name), str) and url
    }


def parse_status(body: Mapping[str, Any], request_id: str | None) -> JobStatus:
    """A ShowAsyncTtsJob 200 body as a JobStatus.

    No `state` but a `code` other than "0": the job failed (FAILED with that code and message,
    as the API docs say). No `state` otherwise (an `error_code`/`error_msg` body): ApiError, an
    error in disguise that may pass if asked again.
    """
    state = body.get("state")
    job_code, job_message = _text(body.get("code")), _text(body.get("message"))
    if not isinstance(state, str) or not state:
        if job_code is not None and job_code != "0":
            return JobStatus("FAILED", {}, job_code, job_message, request_id)
        code = _text(body.get("error_code")) or "NO_STATE"
        message = _text(body.get("error_msg")) or "answer has no 'state'"
        raise ApiError(200, code, message, _text(body.get("request_id")) or request_id)
    return JobStatus(
        state=cut(state, 40),
        links=_links(body),
        code=job_code,
        message=job_message,
        request_id=request_id,
    )


@dataclass(frozen=True, slots=True)
class ListedJob:
    """One job of a ShowTtsJob page: its id, creation time (epoch seconds, if known) and status;
    `status` None: the row's state could not be read, so the job must be asked about itself."""

    job_id: str
    create_time: float | None
    status: JobStatus | None


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of ShowTtsJob: `count` jobs match the filters in all; `jobs` is this page."""

    count: int
    jobs: tuple[ListedJob, ...]


def parse_time(value: object) -> float | None:
    """A creation time as epoch seconds: ISO 8601 text (UTC when it names no zone), or epoch
    seconds or milliseconds (as a number or digits). None for anything else, and for any time
    before 2000 or after 2100 (`0001-01-01`, `9999-12-31`, microseconds, NaN): never raises."""
    seconds: float | None = None
    try:
        if isinstance(value, str) and value.isascii() and value.replace(".", "", 1).isdigit():
            value = float(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
            if seconds > 1e11:  # milliseconds
                seconds /= 1000
        elif isinstance(value, str) and 0 < len(value) <= 64:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            seconds = parsed.timestamp()
    except (ValueError, OverflowError, OSError):
        return None
    if seconds is None or not math.isfinite(seconds) or not EARLIEST <= seconds <= LATEST:
        return None
    return seconds


def format_time(epoch: float) -> str:
    """Epoch seconds as the list call's `create_since`/`create_until` value."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_listed(item: object, request_id: str | None) -> ListedJob | None:
    """A TtsJobDetail as a ListedJob; None when it has no usable job id. A row with an id but
    no readable state gets `status` None; an unreadable creation time is None."""
    if not isinstance(item, dict):
        return None
    job_id, state = item.get("job_id"), item.get("job_state")
    if not isinstance(job_id, str) or not job_id or len(job_id) > 128:
        return None
    create_time = parse_time(item.get("create_time"))
    if not isinstance(state, str) or not state:
        return ListedJob(job_id, create_time, None)
    files = item.get("files")
    first = files[0] if isinstance(files, list) and files and isinstance(files[0], dict) else {}
    message = _text(item.get("fail_msg")) if state == "FAILED" else None
    status = JobStatus(cut(state, 40), _links(first), message=message, request_id=request_id)
    return ListedJob(job_id, create_time, status)


def _error(
    status: int, body: bytes, headers: Mapping[str, str], now: datetime | None = None
) -> ApiError:
    """The exception an error answer stands for (`now`: the local clock, for Retry-After)."""
    request_id = _text(headers.get("X-Request-Id"))
    code = str(status)
    message = cut(body[: MESSAGE_CHARS * 4].decode("utf-8", "replace")) or f"HTTP {status}"
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        code = _text(parsed.get("error_code")) or _text(parsed.get("code")) or code
        message = _text(parsed.get("error_msg")) or _text(parsed.get("message")) or message
        request_id = _text(parsed.get("request_id")) or request_id
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
                    error = _error(response.status, payload, response.headers, self._wall_clock())
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
                request_id = _text(response.headers.get("X-Request-Id"))
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
        """ShowTtsJob: one page of async jobs, newest first, created within [since, until].

        AnswerError when the answer is not a page (not an object, `data` not a list) or has rows
        of which none has a usable job id."""
        query = [("job_type", "ASYNC_JOB"), ("limit", str(limit)), ("offset", str(offset))]
        if since is not None:
            query.append(("create_since", format_time(since)))
        if until is not None:
            query.append(("create_until", format_time(until)))
        body, request_id = await self._call(
            "GET", f"/v1/{self._config.project_id}/ttsc/tts-jobs", query, cap=PAGE_CAP
        )
        items = body.get("data") if isinstance(body, dict) else None
        if items is None and isinstance(body, dict):
            items = []  # no `data` (or null): an empty page
        if not isinstance(items, list):
            raise AnswerError("ShowTtsJob: the answer is not a page of jobs")
        jobs = tuple(j for item in items if (j := parse_listed(item, request_id)))
        if items and not jobs:
            raise AnswerError(f"ShowTtsJob: none of the page's {len(items)} rows can be read")
        count = body.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            count = len(jobs)
        return JobPage(count, jobs)

    async def create_job(self, fields: Mapping[str, Any]) -> str:
        """CreateAsyncTtsJob: the new job's id; `fields` is the body (text, voice_asset_id...)."""
        body, _ = await self._call(
            "POST", f"/v1/{self._config.project_id}/ttsc/async-jobs", body=orjson.dumps(fields)
        )
        job_id = body.get("job_id") if isinstance(body, dict) else None
        if not isinstance(job_id, str):
            raise TransportError("CreateAsyncTtsJob: answer has no job_id")
        return job_id
