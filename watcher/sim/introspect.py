"""The simulator's own routes under `/_sim/`, for tools that run it in another process.

    GET /_sim/stats            {"requests": {api: n}, "statuses": {"<api> <status>": n},
                                "faults": {fault name: n injected}}
    GET /_sim/files/{job_id}   {"job_id", "state", "expected_state",
                                "files": {kind: {"bytes": n, "sha256": hex}}}

They need no credentials, are not counted in the stats and never get faults. `files` lists every
file the job has (`audio` always; `info`, `srt`, `action` as asked for or chosen by id), named as
the watcher names them (`watcher._parse.FILE_FIELDS`), with the size and digest of the bytes its
link serves when the job has SUCCEEDed (whatever its state now); `state` is the state
ShowAsyncTtsJob reports now and `expected_state` the one the job ends in. An unknown job id
is 404 `{"error", "job_id"}`.
"""

from __future__ import annotations

import hashlib

import anyio
from aiohttp import web

from watcher.sim.gateway import SIM_FILES_ROUTE, SIM_STATS_ROUTE, json_response
from watcher.sim.jobs import SimJob
from watcher.sim.media import FileKind, files_of, render
from watcher.sim.simulator import Simulator

PREFIX = "/_sim"
HASH_CHUNK_BYTES = 1 << 20


def file_label(kind: FileKind) -> str:
    """The watcher's name for the file linked by `kind.field`: audio, info, srt or action."""
    return kind.name.lower()


def digests(job: SimJob) -> dict[str, dict[str, object]]:
    """Size and SHA-256 of each file `job` has, by the watcher's name for it; pure, so it may
    run in a worker thread."""
    out: dict[str, dict[str, object]] = {}
    for kind in files_of(job):
        payload = render(job, kind)
        digest = hashlib.sha256()
        for chunk in payload.chunks(HASH_CHUNK_BYTES):
            digest.update(chunk)
        out[file_label(kind)] = {"bytes": payload.length, "sha256": digest.hexdigest()}
    return out


class _SimRoutes:
    """The `/_sim/` handlers over one simulator."""

    __slots__ = ("_sim",)

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    async def stats(self, request: web.Request) -> web.Response:
        """Requests answered by API and by API and status, and faults injected."""
        stats = self._sim.stats
        return json_response(
            {
                "requests": stats.requests(),
                "statuses": {f"{api} {status}": n for (api, status), n in stats.statuses().items()},
                "faults": self._sim.faults.counts(),
            }
        )

    async def files(self, request: web.Request) -> web.Response:
        """The job's states and the size and digest of each of its files."""
        job_id = request.match_info["job_id"]
        job = self._sim.jobs.get(job_id)
        if job is None:
            return json_response({"error": "no such job", "job_id": job_id}, 404)
        state = self._sim.state(job)
        files = await anyio.to_thread.run_sync(digests, job)
        return json_response(
            {
                "job_id": job_id,
                "state": state.value,
                "expected_state": self._sim.expected_state(job_id).value,
                "files": files,
            }
        )


def add_routes(app: web.Application, sim: Simulator) -> None:
    """Add the `/_sim/` routes for `sim` to `app`."""
    routes = _SimRoutes(sim)
    app.router.add_get(f"{PREFIX}/stats", routes.stats, name=SIM_STATS_ROUTE)
    app.router.add_get(f"{PREFIX}/files/{{job_id}}", routes.files, name=SIM_FILES_ROUTE)
