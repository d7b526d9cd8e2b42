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

    with SimThread(config) as running:      # or: async with serve(config) as running:
        client.base_url = running.url
        running.sim.stats.requests()        # requests answered, by API name
        running.sim.storage.requests        # headers of recent download requests
"""

from __future__ import annotations

from watcher.sim.app import create_app
from watcher.sim.config import DEMO_AK, DEMO_PROJECT_ID, DEMO_SK, SimConfig
from watcher.sim.server import RunningSim, SimThread, serve
from watcher.sim.simulator import Simulator

__all__ = [
    "DEMO_AK",
    "DEMO_PROJECT_ID",
    "DEMO_SK",
    "RunningSim",
    "SimConfig",
    "SimThread",
    "Simulator",
    "create_app",
    "serve",
]
