"""The simulator's HTTP routes, on an aiohttp application.

    POST /v1/{project_id}/ttsc/async-jobs            CreateAsyncTtsJob -> {"job_id"}
    GET  /v1/{project_id}/ttsc/async-jobs/{job_id}   ShowAsyncTtsJob   -> {"state", ...}
    GET  /v1/{project_id}/ttsc/tts-jobs              ShowTtsJob (list) -> {"count", "data"}
    GET  /obs/{bucket}/{job_id}/{file}               result files behind the signed links
    GET  /_sim/stats, /_sim/files/{job_id}           introspection (see `introspect`)

The API routes sit behind `Gateway.middleware` (auth, project, throttling, injected faults,
request ids, error bodies); the storage route is authenticated by its link alone; `/_sim/` needs
nothing. Bad parameters are answered 400 `MSS.000000003` with a message naming the field.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from watcher.sim.gateway import STORAGE_ROUTE, ApiFault, json_response
from watcher.sim.introspect import add_routes
from watcher.sim.jobs import JobState, SimJob
from watcher.sim.simulator import AUDIO_FORMATS, MAX_TEXT_CHARS, Simulator

ILLEGAL = "MSS.000000003"
JOB_TYPES = ("ASYNC_JOB", "AUDITION", "WEBSOCKET")
# Optional integer fields of CreateAsyncTtsJob and their documented ranges.
INT_RANGES = {"speed": (50, 200), "pitch": (50, 200), "volume": (90, 240), "priority": (0, 10)}


def _illegal(message: str) -> ApiFault:
    return ApiFault(400, ILLEGAL, f"Illegal parameter: {message}")


def _base(request: web.Request) -> str:
    """Scheme and host the client used: result links point back at the same server."""
    return f"{request.scheme}://{request.host}"


def iso_time(epoch: float) -> str:
    """Epoch seconds as `2025-01-01T00:00:00Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def parse_iso_time(name: str, value: str) -> float:
    """An ISO 8601 time (UTC if no offset is given) as epoch seconds; ApiFault if malformed."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _illegal(f"{name} must be an ISO 8601 time like 2025-01-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _illegal(f"{name} must be an integer from {low} to {high}")
    return value


def parse_create(body: bytes) -> dict[str, Any]:
    """The CreateAsyncTtsJob body, validated; ApiFault naming the first bad field."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _illegal("the request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _illegal("the request body must be a JSON object")
    text = doc.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _illegal("text is required and must be a non-empty string")
    if len(text) > MAX_TEXT_CHARS:
        raise _illegal(f"text must be at most {MAX_TEXT_CHARS} characters")
    voice = doc.get("voice_asset_id")
    if not isinstance(voice, str) or not voice:
        raise _illegal("voice_asset_id is required and must be a non-empty string")
    audio_format = doc.get("audio_format", "WAV")
    if audio_format not in AUDIO_FORMATS:
        raise _illegal("audio_format must be WAV or MP3")
    for flag in ("need_timestamp", "gen_srt"):
        if not isinstance(doc.get(flag, False), bool):
            raise _illegal(f"{flag} must be a boolean")
    for name, (low, high) in INT_RANGES.items():
        value = doc.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _illegal(f"{name} must be an integer from {low} to {high}")
    return doc


class _Routes:
    """The API handlers over one simulator."""

    __slots__ = ("_sim",)

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    async def create(self, request: web.Request) -> web.Response:
        """CreateAsyncTtsJob. `priority` is validated, recorded and otherwise ignored."""
        doc = parse_create(await request.read())
        job = self._sim.jobs.add(
            doc["text"],
            doc["voice_asset_id"],
            audio_format=doc.get("audio_format", "WAV"),
            need_timestamp=doc.get("need_timestamp", False),
            gen_srt=doc.get("gen_srt", False),
            priority=doc.get("priority", 5),
        )
        return json_response({"job_id": job.job_id})

    async def show(self, request: web.Request) -> web.Response:
        """ShowAsyncTtsJob: the state; links when SUCCEED; code and message when FAILED."""
        job_id = request.match_info["job_id"]
        job = self._sim.jobs.get(job_id)
        if job is None:
            raise _illegal(f"job_id {job_id} does not exist")
        state = self._sim.state(job)
        doc: dict[str, str] = {"state": state.value}
        if state is JobState.SUCCEED:
            doc.update(self._sim.links(job, _base(request)))
        elif state is JobState.FAILED and job.failure is not None:
            doc["code"] = job.failure.code
            doc["message"] = job.failure.message
        return json_response(doc)

    async def list_jobs(self, request: web.Request) -> web.Response:
        """ShowTtsJob: jobs newest first, paged by limit/offset, filtered by time, id and type."""
        limit = _int_param(request, "limit", 10, 1, 100)
        offset = _int_param(request, "offset", 0, 0, 2**31 - 1)
        query = request.query
        since = query.get("create_since")
        until = query.get("create_until")
        since_t = None if since is None else parse_iso_time("create_since", since)
        until_t = None if until is None else parse_iso_time("create_until", until)
        job_type = query.get("job_type")
        if job_type is not None and job_type not in JOB_TYPES:
            raise _illegal(f"job_type must be one of {', '.join(JOB_TYPES)}")
        count: int = 0
        page: Sequence[SimJob] = ()
        if job_type in (None, "ASYNC_JOB"):
            wanted = query.get("job_id")
            if wanted is None:
                count, page = self._sim.jobs.page(
                    since=since_t, until=until_t, offset=offset, limit=limit
                )
            elif (job := self._sim.jobs.get(wanted)) is not None and _within(job, since_t, until_t):
                count, page = 1, (job,)[offset : offset + limit]
        base = _base(request)
        return json_response({"count": count, "data": [self._detail(j, base) for j in page]})

    def _detail(self, job: SimJob, base: str) -> dict[str, object]:
        state = self._sim.state(job)
        detail: dict[str, object] = {
            "job_id": job.job_id,
            "asset_id": job.voice_asset_id,
            "job_type": "ASYNC_JOB",
            "job_state": state.value,
            "create_time": iso_time(job.create_time),
            "text_length": job.text_length,
            "audio_format": job.audio_format,
            "need_timestamp": job.need_timestamp,
            "gen_srt": job.gen_srt,
            "files": [self._sim.links(job, base)] if state is JobState.SUCCEED else [],
        }
        if state is JobState.FAILED and job.failure is not None:
            detail["fail_msg"] = job.failure.message
        return detail


def _within(job: SimJob, since: float | None, until: float | None) -> bool:
    second = int(job.create_time)
    return (since is None or second >= since) and (until is None or second <= until)


def create_app(sim: Simulator) -> web.Application:
    """An application serving `sim`: the three API routes behind its gateway, storage, and the
    `/_sim/` introspection routes."""
    routes = _Routes(sim)
    app = web.Application(middlewares=[sim.gateway.middleware], client_max_size=4 * 1024**2)
    base = "/v1/{project_id}/ttsc"
    app.router.add_post(f"{base}/async-jobs", routes.create, name="CreateAsyncTtsJob")
    app.router.add_get(f"{base}/async-jobs/{{job_id}}", routes.show, name="ShowAsyncTtsJob")
    app.router.add_get(f"{base}/tts-jobs", routes.list_jobs, name="ShowTtsJob")
    app.router.add_route("*", "/obs/{key:.+}", sim.storage.handle, name=STORAGE_ROUTE)
    add_routes(app, sim)
    return app
