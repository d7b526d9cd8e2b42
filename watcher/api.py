"""The MetaStudio API client: signed requests over one aiohttp session, parsed into records.

This is the one boundary where aiohttp's errors become ours (`errors.py`): error bodies become
`ApiError` (or `AuthError` / `ThrottledError`), anything without a usable answer `TransportError`.
Each call signs afresh, so a retry never reuses a stale `X-Sdk-Date`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from yarl import URL

from watcher import __version__
from watcher.auth import AkSk, Token, canonical_query, sign
from watcher.config import ApiConfig
from watcher.errors import ApiError, AuthError, ThrottledError, TransportError

USER_AGENT = f"watcher/{__version__}"
AUTH_CODES = frozenset({"APIGW.0301", "APIG.0301", "MSS.000000004", "MSS.00000004"})
THROTTLE_CODES = frozenset({"APIGW.0308", "APIG.0308"})
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


def parse_status(body: Mapping[str, Any], request_id: str | None) -> JobStatus:
    """A ShowAsyncTtsJob 200 body as a JobStatus; ApiError when it is an error in disguise."""
    state = body.get("state")
    if not isinstance(state, str) or not state:
        code = str(body.get("error_code") or "NO_STATE")
        message = str(body.get("error_msg") or "answer has no 'state'")
        raise ApiError(200, code, message, str(body.get("request_id") or request_id or "") or None)
    links = {
        kind: url
        for kind, name in FILE_FIELDS.items()
        if isinstance(url := body.get(name), str) and url
    }
    job_code, job_message = body.get("code"), body.get("message")
    return JobStatus(
        state=state,
        links=links,
        code=None if job_code is None else str(job_code),
        message=str(job_message) if job_message else None,
        request_id=request_id,
    )


@dataclass(frozen=True, slots=True)
class ListedJob:
    """One job of a ShowTtsJob page: its id, creation time (epoch seconds, if given) and status."""

    job_id: str
    create_time: float | None
    status: JobStatus


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of ShowTtsJob: `count` jobs match the filters in all; `jobs` is this page."""

    count: int
    jobs: tuple[ListedJob, ...]


def parse_time(value: object) -> float | None:
    """A creation time as epoch seconds: ISO 8601 text, or epoch seconds or milliseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000 if value > 1e11 else float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return float(value) if value.replace(".", "", 1).isdigit() else None
    return None


def format_time(epoch: float) -> str:
    """Epoch seconds as the list call's `create_since`/`create_until` value."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_listed(item: Mapping[str, Any], request_id: str | None) -> ListedJob | None:
    """A TtsJobDetail as a ListedJob; None when it has no usable id or state."""
    job_id, state = item.get("job_id"), item.get("job_state")
    if not isinstance(job_id, str) or not isinstance(state, str) or not state:
        return None
    files = item.get("files")
    first = files[0] if isinstance(files, list) and files and isinstance(files[0], dict) else {}
    links = {
        kind: url
        for kind, name in FILE_FIELDS.items()
        if isinstance(url := first.get(name), str) and url
    }
    message = item.get("fail_msg") if state == "FAILED" else None
    status = JobStatus(
        state, links, message=str(message) if message else None, request_id=request_id
    )
    return ListedJob(job_id, parse_time(item.get("create_time")), status)


def _error(status: int, body: bytes, headers: Mapping[str, str]) -> ApiError:
    """The exception an error answer stands for."""
    request_id = headers.get("X-Request-Id")
    code, message = str(status), body[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        code = str(parsed.get("error_code") or parsed.get("code") or code)
        message = str(parsed.get("error_msg") or parsed.get("message") or message)
        request_id = str(parsed.get("request_id") or request_id or "") or None
    if status == 401 or code in AUTH_CODES:
        return AuthError(status, code, message, request_id)
    if status == 429 or code in THROTTLE_CODES:
        retry_after = headers.get("Retry-After", "")
        seconds = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else None
        return ThrottledError(status, code, message, request_id, seconds)
    return ApiError(status, code, message, request_id)


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
        self.requests = 0

    def _headers(
        self, method: str, path: str, query: list[tuple[str, str]], body: bytes
    ) -> dict[str, str]:
        creds = self._config.credentials
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
        return sign(creds, method, path, query, headers, body, self._wall_clock())

    async def _call(
        self, method: str, path: str, query: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> tuple[Any, str | None]:
        """Send one signed request; the decoded JSON body and request id of a 2xx answer."""
        query = query or []
        full_path = f"{self._base.raw_path.rstrip('/')}{path}"
        wire = f"{full_path}?{canonical_query(query)}" if query else full_path
        url = self._base.join(URL(wire, encoded=True))
        headers = self._headers(method, full_path, query, body)
        self.requests += 1
        try:
            async with self._session.request(
                method,
                url,
                headers=headers,
                data=body or None,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                payload = await response.read()
                if response.status >= 300:
                    raise _error(response.status, payload, response.headers)
                request_id = response.headers.get("X-Request-Id")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
        try:
            return orjson.loads(payload), request_id
        except orjson.JSONDecodeError as exc:
            raise TransportError(
                f"{method} {path}: answer is not JSON ({len(payload)} bytes)"
            ) from exc

    async def show_job(self, job_id: str) -> JobStatus:
        """ShowAsyncTtsJob: the job's state and, once it succeeded, its file links."""
        body, request_id = await self._call(
            "GET", f"/v1/{self._config.project_id}/ttsc/async-jobs/{job_id}"
        )
        if not isinstance(body, dict):
            raise TransportError(f"ShowAsyncTtsJob {job_id}: answer is not a JSON object")
        return parse_status(body, request_id)

    async def list_jobs(
        self,
        *,
        offset: int,
        limit: int = 100,
        since: float | None = None,
        until: float | None = None,
    ) -> JobPage:
        """ShowTtsJob: one page of async jobs, newest first, created within [since, until]."""
        query = [("job_type", "ASYNC_JOB"), ("limit", str(limit)), ("offset", str(offset))]
        if since is not None:
            query.append(("create_since", format_time(since)))
        if until is not None:
            query.append(("create_until", format_time(until)))
        body, request_id = await self._call(
            "GET", f"/v1/{self._config.project_id}/ttsc/tts-jobs", query
        )
        if not isinstance(body, dict) or not isinstance(body.get("data", []), list):
            raise TransportError("ShowTtsJob: answer is not a page of jobs")
        items = body.get("data") or []
        jobs = tuple(
            j for item in items if isinstance(item, dict) and (j := parse_listed(item, request_id))
        )
        count = body.get("count")
        return JobPage(count if isinstance(count, int) else len(jobs), jobs)

    async def create_job(self, fields: Mapping[str, Any]) -> str:
        """CreateAsyncTtsJob: the new job's id; `fields` is the body (text, voice_asset_id...)."""
        body, _ = await self._call(
            "POST", f"/v1/{self._config.project_id}/ttsc/async-jobs", body=orjson.dumps(fields)
        )
        job_id = body.get("job_id") if isinstance(body, dict) else None
        if not isinstance(job_id, str):
            raise TransportError("CreateAsyncTtsJob: answer has no job_id")
        return job_id
