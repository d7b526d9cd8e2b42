"""What the MetaStudio API's answers mean: pure functions from decoded JSON to records.

Nothing on the wire is trusted: every field is checked where it is parsed, and one odd field
affects the one job it belongs to (a list row whose time or state cannot be read is left to that
job's own single GET), never the run. Messages taken from answers are cut to `MESSAGE_CHARS`.
Nothing here does I/O or reads a clock; the client (`_client.py`) sends the requests and hands
the decoded bodies here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from watcher._errors import ApiError, TransportError

MESSAGE_CHARS = 300  # an answer's message is cut to this many characters for logs and manifest
# Creation times outside this range (2000-01-01 .. 2100-01-01, epoch seconds) are not believed.
EARLIEST, LATEST = 946684800.0, 4102444800.0
# ShowAsyncTtsJob's link fields, by the name the watcher gives each kind of file.
FILE_FIELDS = {
    "audio": "audio_file_url",
    "info": "audio_info_file_url",
    "srt": "audio_srt_file_url",
    "action": "audio_action_file_url",
}
NOT_A_PAGE = "ShowTtsJob: the answer is not a page of jobs"


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


class AnswerError(TransportError):
    """Something answered, but not with a usable answer: not JSON, not the documented shape, or
    larger than its cap. The service is reachable (this is no outage); trying again may pass."""


def cut(text: str, limit: int = MESSAGE_CHARS) -> str:
    """`text` on one line, at most `limit` characters (an ellipsis marks a cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def field_text(value: object) -> str | None:
    """A code, message or request id field as short text; None when absent or empty."""
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
    job_code, job_message = field_text(body.get("code")), field_text(body.get("message"))
    if not isinstance(state, str) or not state:
        if job_code is not None and job_code != "0":
            return JobStatus("FAILED", {}, job_code, job_message, request_id)
        code = field_text(body.get("error_code")) or "NO_STATE"
        message = field_text(body.get("error_msg")) or "answer has no 'state'"
        raise ApiError(200, code, message, field_text(body.get("request_id")) or request_id)
    return JobStatus(
        state=cut(state, 40),
        links=_links(body),
        code=job_code,
        message=job_message,
        request_id=request_id,
    )


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
    message = field_text(item.get("fail_msg")) if state == "FAILED" else None
    status = JobStatus(cut(state, 40), _links(first), message=message, request_id=request_id)
    return ListedJob(job_id, create_time, status)


def parse_page(body: object, request_id: str | None) -> JobPage:
    """A ShowTtsJob 200 body as a JobPage. No `data` (or null) is an empty page; a `count`
    that is not a count is the page's own length. AnswerError when the body is not a page (not
    an object, `data` not a list) or has rows of which none has a usable job id."""
    if not isinstance(body, dict):
        raise AnswerError(NOT_A_PAGE)
    items = body.get("data")
    if items is None:
        items = []  # no `data` (or null): an empty page
    if not isinstance(items, list):
        raise AnswerError(NOT_A_PAGE)
    jobs = tuple(j for item in items if (j := parse_listed(item, request_id)))
    if items and not jobs:
        raise AnswerError(f"ShowTtsJob: none of the page's {len(items)} rows can be read")
    count = body.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        count = len(jobs)
    return JobPage(count, jobs)
