"""A MetaStudio async-TTS simulator: the real API's routes, auth and errors on a local port.

What is faithful (from the official docs and the official Python SDK 3.1.219, which the tests
drive against it):

- the three routes: CreateAsyncTtsJob `POST /v1/{project_id}/ttsc/async-jobs`, ShowAsyncTtsJob
  `GET .../async-jobs/{job_id}` and the ShowTtsJob list `GET .../ttsc/tts-jobs`, with their
  fields, parameter ranges and the WAITING -> PROCESSING -> SUCCEED/FAILED states;
- authentication: `X-Auth-Token`, or SDK-HMAC-SHA256 signatures verified against the request as
  received, `X-Sdk-Date` skew, `X-Project-Id`, `X-Security-Token`; the documented error bodies
  (401 APIGW.0301, 403 MSS.000000004, 400 MSS.000000003, 429 APIGW.0308) and `X-Request-Id`;
- result links on a separate "object storage" route that needs no API credential, expire after
  `url_ttl` seconds and are refused with OBS-style XML 403s.

What is invented (the real service does not document it):

- how long synthesis takes (`(2 + 0.05 * characters) * time_scale` seconds, `slots` at a time),
  which jobs fail (a hash of the id against `fail_percent`) and the `code`/`message` they carry;
- the content of the files: a WAV tone (`audio_format: MP3` is served WAV too, see `media`), SRT
  cues, and the layouts of the timestamp and action JSON files; which jobs get an action file;
- `priority` is validated and ignored; the wording of 400/403/404 messages; the link format.

Faults on purpose (`faults`; all off by default): `SimConfig(faults=FaultPlan(api_500=0.1, ...))`
or `watcher sim --fault api-500=0.1 --fault slow=0.05 --slow-seconds 35`. Per-request faults
(api-500, api-reset, throttle, slow, error-200, auth-401, short-download, expired-link) are drawn
from generators seeded by `seed`; `unknown-state` picks jobs by a hash of their id, which end
CANCELED: `Simulator.expected_state(job_id)` says in advance how each job ends.

For tools in another process, two routes that need no credentials and are not counted:

    GET /_sim/stats           {"requests": {api: n}, "statuses": {"<api> <status>": n},
                               "faults": {name: n injected}}
    GET /_sim/files/{job_id}  {"job_id", "state", "expected_state",
                               "files": {"audio"|"info"|"srt"|"action": {"bytes", "sha256"}}}

    with SimThread(config) as running:      # or: async with serve(config) as running:
        client.base_url = running.url
        running.sim.stats.requests()        # requests answered, by API name
        running.sim.faults.counts()         # faults injected, by name
        running.sim.storage.requests        # headers of recent download requests
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from watcher.sim.config import DEMO_AK, DEMO_PROJECT_ID, DEMO_SK, SimConfig
from watcher.sim.faults import FaultPlan

if TYPE_CHECKING:
    from watcher.sim.app import create_app
    from watcher.sim.server import RunningSim, SimThread, serve
    from watcher.sim.simulator import Simulator

# The server side (aiohttp.web) is imported on first use, so `watcher run`, which builds the
# `watcher sim` parser among the others, never loads it.
_LAZY = {
    "create_app": "watcher.sim.app",
    "RunningSim": "watcher.sim.server",
    "SimThread": "watcher.sim.server",
    "serve": "watcher.sim.server",
    "Simulator": "watcher.sim.simulator",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'watcher.sim' has no attribute {name!r}")


__all__ = [
    "DEMO_AK",
    "DEMO_PROJECT_ID",
    "DEMO_SK",
    "FaultPlan",
    "RunningSim",
    "SimConfig",
    "SimThread",
    "Simulator",
    "create_app",
    "serve",
]
