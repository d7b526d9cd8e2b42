"""Settings as small frozen value objects, built once (by the CLI or a caller) and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from watcher._auth import Credentials
from watcher._bucket import BucketUrl
from watcher._ratelimit import HEADROOM
from watcher._retry import RetryPolicy
from watcher._shard import Shard

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
        `retry`: transient errors in a row on one job before it gets an ERROR line, and the backoff
        between them (never shorter than the cadence).
        `throttle_pause`: how long everyone waits after a 429 without a Retry-After header.
        `auth_failures`: consecutive refused requests that stop the run (the gateway locks a key
        after more than 5; one refusal among successes can be a hiccup, three in a row is not);
        after each refusal everyone waits `auth_pause` seconds.
        `strategy`: `single` (one GET per job), `list` (list-call sweeps) or `auto` (sweeps when
        single GETs cannot keep up); `rate` applies to each API on its own, as the gateway counts.
        `list_lookback`: how far before its admission a job of unknown creation time may have been
        created, for the first sweeps' window. `headroom`: the share of `rate` actually paced at, so
        arrival jitter does not push a gateway's one-second count over the limit.
        `max_pause`: the longest any pause may be (a Retry-After of an hour is cut to this).
        `max_gap`: while list sweeps carry the polling, no pending job goes longer than this
        unread (seconds; pages where nothing changes are read less often, down to this floor).
        `outage_timeout`: how long the API may stay unreachable for everyone before the run stops
        (OutageError, exit 3; None: never); `outage_probe`: the first backoff between probes then
    (doubling up to 30 times that).
    """

    cadence: float = 3.0
    rate: float = 10.0
    job_timeout: float | None = None
    retry: RetryPolicy = RetryPolicy()
    throttle_pause: float = 2.0
    auth_failures: int = 3
    auth_pause: float = 1.0
    max_in_flight: int = 64
    strategy: str = "auto"
    list_lookback: float = 24 * 3600.0
    headroom: float = HEADROOM
    max_pause: float = 60.0
    outage_timeout: float | None = 900.0
    outage_probe: float = 1.0
    max_gap: float = 60.0


GIB = 1024**3


@dataclass(frozen=True, slots=True)
class DownloadPolicy:
    """How results are fetched: `workers` jobs at a time, each file streamed to disk.

    `retry`: tries per file for transient failures (resets, short bodies, 5xx, throttling, stalls).
    `speed_limit`, `speed_time`: as curl's `--speed-limit`/`--speed-time`, an attempt that
    receives fewer than `speed_limit` bytes a second for `speed_time` seconds is abandoned (and
    tried again); no total timeout cuts a slow transfer that keeps moving. `connect_timeout`:
    seconds to open a connection. `link_margin`: a link that expires within this many seconds is
    refreshed before use (links last one hour; the expiry is read from the link's `Expires`, else
    assumed one hour). `max_file_bytes`: a larger file is refused, with or without a
    Content-Length (None: no cap). `verify_tls`: off only with `--insecure`. `kinds`: which files
    to fetch (audio, srt, info, action); None: every link. `outage_timeout`: how long storage may
    answer nobody before the run stops (None: never).
    """

    workers: int = 8
    speed_limit: float = 1024.0
    speed_time: float = 30.0
    connect_timeout: float = 30.0
    chunk_bytes: int = 1024 * 1024
    retry: RetryPolicy = RetryPolicy(attempts=5, base=0.5, cap=30.0)
    link_ttl: float = 3600.0
    link_margin: float = 300.0
    max_file_bytes: int | None = 4 * GIB
    verify_tls: bool = True
    kinds: frozenset[str] | None = None
    outage_timeout: float | None = 900.0


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything one `watcher run` needs. `manifest` None writes the manifest to stdout.

    `retry_failed`: jobs an earlier run left FAILED are watched again (ERROR and TIMEOUT always
    are). `verify`: a rerun checks the sha256 of every file it skips, not only size and mtime.
    `grace`: after SIGINT/SIGTERM, how long downloads under way may take to finish.
    `name_template`: file stems from input fields (`naming.py`). `shard`: watch only the jobs
    this shard owns (`shard.py`); give it 1/N of the rate yourself (the CLI does).
    """

    api: ApiConfig
    out_dir: Path
    manifest: Path | None
    poll: PollPolicy = PollPolicy()
    download: DownloadPolicy = DownloadPolicy()
    retry_failed: bool = False
    grace: float = 10.0
    name_template: str = "{job_id}"
    shard: Shard | None = None
    verify: bool = False
    bucket: BucketUrl | None = None
