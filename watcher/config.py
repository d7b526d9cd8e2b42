"""Settings as small frozen value objects, built once (by the CLI or a caller) and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from watcher.auth import Credentials

REGIONS = {
    "cn-north-4": "https://metastudio.cn-north-4.myhuaweicloud.com",
    "cn-east-3": "https://metastudio.cn-east-3.myhuaweicloud.com",
}


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """Where the API is and how to reach it."""

    endpoint: str
    project_id: str
    credentials: Credentials = field(repr=False)
    request_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """How often each job is asked about, and how much all of them may ask together.

    `cadence`: no job is polled more often than this (seconds; the API documents 3).
    `rate`: API requests per second, shared by every job.
    `job_timeout`: a job not final this long after it was admitted gets a TIMEOUT line.
    `max_errors`: consecutive transient errors on one job before it gets an ERROR line.
    `throttle_pause`: how long everyone waits after a 429 without a Retry-After header.
    """

    cadence: float = 3.0
    rate: float = 10.0
    job_timeout: float | None = None
    max_errors: int = 5
    error_backoff: float = 1.0
    throttle_pause: float = 2.0
    max_in_flight: int = 64


@dataclass(frozen=True, slots=True)
class DownloadPolicy:
    """How results are fetched: `workers` jobs at a time, each file streamed to disk."""

    workers: int = 8
    timeout: float = 300.0
    chunk_bytes: int = 256 * 1024


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything one `watcher run` needs. `manifest` None writes the manifest to stdout."""

    api: ApiConfig
    out_dir: Path
    manifest: Path | None
    poll: PollPolicy = PollPolicy()
    download: DownloadPolicy = DownloadPolicy()
