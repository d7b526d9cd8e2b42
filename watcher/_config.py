"""Settings as small frozen value objects, built once (by the CLI or a caller) and passed down.

These objects are the one source of defaults: every flag of every command takes its default from
here (or from the config object of its own module, such as `SubmitPolicy` or `MetricsConfig`), so
a library caller and a command line with no flags get the same behaviour. `default(cls, name)`
reads a field's default without building the object (for those that need credentials).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from watcher._auth import Credentials
from watcher._ratelimit import HEADROOM
from watcher._retry import RetryPolicy

if TYPE_CHECKING:  # annotations only: config stays below the modules that use it
    from watcher._bucket import BucketUrl
    from watcher._shard import Shard

REGIONS = {
    "cn-north-4": "https://metastudio.cn-north-4.myhuaweicloud.com",
    "cn-east-3": "https://metastudio.cn-east-3.myhuaweicloud.com",
}
# The region used when neither an endpoint nor a region is given.
DEFAULT_REGION = "cn-north-4"
# Where `watcher run` writes files when no --out is given.
DEFAULT_OUT = "tts-out"


def default(cls: type[Any], name: str) -> Any:
    """The default of field `name` of the dataclass `cls`; KeyError when it has none."""
    for f in fields(cls):
        if f.name == name and f.default is not MISSING:
            return f.default
    raise KeyError(f"{cls.__name__}.{name} has no default")


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
    """How results are fetched: `workers` jobs at a time, each file streamed to disk. 16: under a
    40 ms first-byte latency ~200 KB files go 1.6-2.4x faster than at 8 (32: 3.5-4x), while on a
    2-core machine where downloads are CPU-bound 32 doubled the polling's detection delay and 16
    kept it within 10% of 8's (bench/README.md 4b and 4c).

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

    workers: int = 16
    speed_limit: float = 1024.0
    speed_time: float = 30.0
    connect_timeout: float = 30.0
    chunk_bytes: int = 1024 * 1024
    # 6 tries, as for polls: `--max-retries` (5 retries) sets both, and the library agrees with it.
    retry: RetryPolicy = RetryPolicy(attempts=6, base=0.5, cap=30.0)
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


@dataclass(frozen=True, slots=True)
class LogConfig:
    """What a run tells the person or the log collector watching it.

    `level`: the least severe log event shown (`quiet` raises it to warning). `format`: `console`,
    `json`, or `auto` (console on a terminal, JSON lines otherwise). `quiet`: no progress and no
    summary. `progress_interval`: seconds between progress reports; None: `terminal_interval` on
    a terminal (a live status line), else `log_interval` (`progress` log events).
    """

    level: str = "info"
    format: Literal["auto", "console", "json"] = "auto"
    quiet: bool = False
    progress_interval: float | None = None
    terminal_interval: float = 0.5
    log_interval: float = 30.0

    @property
    def effective_level(self) -> str:
        """`level`, raised to warning by `quiet`."""
        if self.quiet and self.level in ("debug", "info"):
            return "warning"
        return self.level


@dataclass(frozen=True, slots=True)
class ReportConfig:
    """What `watcher report` prints: `format` `text` (a table) or `json` (one object); `html`:
    also write the page there."""

    format: str = "text"
    html: Path | None = None
