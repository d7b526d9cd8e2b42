"""`watcher run`: its flags, the `RunConfig` they make, and the run itself under signals.

`add_arguments` declares every flag of `watcher run` (and of `watcher config`, which shows their
effective values), each default taken from the config objects; `build_config` turns the parsed
flags into a `RunConfig` (ConfigError names the culprit); `run` watches the jobs with `watch`,
stopping gently on the first SIGINT/SIGTERM (within `--grace`) and at once on a second, wires
progress (a status line or `progress` events) and metrics, prints the summary and returns the
exit code of the batch. Errors are raised for `watcher.cli.main` to report.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import structlog

from watcher import _exits as exits
from watcher import _logs as logs
from watcher import _loop as loop
from watcher import _report as report
from watcher._bucket import BucketUrl, store_options
from watcher._config import (
    DEFAULT_OUT,
    DownloadPolicy,
    LogConfig,
    PollPolicy,
    RunConfig,
    default,
)
from watcher._engine import Hooks, Summary, watch
from watcher._errors import ConfigError, Exit, InputError, NoJobsError, unwrap
from watcher._inputs import Job, check_inputs, read_inputs
from watcher._metrics import Metrics, MetricsConfig, Publisher
from watcher._naming import check_template
from watcher._options import DAY, PORT, add_api_arguments, api_config, number, positive
from watcher._progress import Screen, Snapshot, TerminalProgress, log_progress, on_terminal
from watcher._shard import shard_type

log = structlog.get_logger("watcher.cli")
FILE_KINDS = ("audio", "srt", "info", "action")
POLL = PollPolicy()
DOWNLOAD = DownloadPolicy()
LOGS = LogConfig()
METRICS = MetricsConfig()
# Every input line is a metrics update as well; this often they are published without --progress.
METRICS_PROGRESS_INTERVAL = 5.0


def _kinds(text: str) -> frozenset[str]:
    kinds = frozenset(k.strip() for k in text.split(",") if k.strip())
    if not kinds or not kinds <= set(FILE_KINDS):
        raise argparse.ArgumentTypeError(f"expected some of {','.join(FILE_KINDS)}, not {text!r}")
    return kinds


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The flags of `watcher run` (and `watcher config`, which shows their effective values)."""
    run.add_argument("inputs", nargs="*", metavar="INPUT", help="job id files; '-' or none: stdin")
    run.add_argument("--config", metavar="FILE", help="TOML settings file (or WATCHER_CONFIG)")
    run.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help="folder for files, or a bucket: s3://BUCKET/PREFIX, obs://BUCKET/PREFIX",
    )
    run.add_argument("--manifest", help="manifest path (OUT/manifest.jsonl); '-' for stdout")
    add_api_arguments(run)
    run.add_argument(
        "--poll",
        choices=["auto", "single", "list"],
        default=POLL.strategy,
        help="single GETs, list-call sweeps, or sweeps when single GETs cannot keep up",
    )
    run.add_argument(
        "--cadence",
        type=positive(float, DAY),
        default=POLL.cadence,
        help="seconds between polls of a job",
    )
    run.add_argument(
        "--rate",
        type=positive(float, 10_000),
        default=POLL.rate,
        help="requests per second per API",
    )
    run.add_argument(
        "--download-workers",
        type=positive(int, 1024),
        default=DOWNLOAD.workers,
        help="jobs downloaded at once",
    )
    run.add_argument(
        "--files", type=_kinds, help=f"which files to save: some of {','.join(FILE_KINDS)}"
    )
    run.add_argument(
        "--name", default=default(RunConfig, "name_template"), help="file name template"
    )
    run.add_argument("--shard", type=shard_type, help="K/N: watch only shard K of N (0-based)")
    run.add_argument(
        "--job-timeout", type=positive(float, 365 * DAY), help="seconds before a job is TIMEOUT"
    )
    run.add_argument(
        "--max-retries",
        type=number(int, 0, 100, low_open=False),
        default=POLL.retry.attempts - 1,  # DownloadPolicy's is the same
        help="transient errors in a row a job or file may have before it is ERROR (0: none)",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="watch FAILED jobs of the manifest again (ERROR/TIMEOUT always are)",
    )
    run.add_argument(
        "--verify",
        action="store_true",
        help="on a rerun, check the sha256 of every saved file, not only its size and mtime",
    )
    run.add_argument(
        "--max-file-bytes",
        type=number(int, 0, 2**62, low_open=False),
        default=DOWNLOAD.max_file_bytes or 0,
        help="refuse larger downloads, with or without a Content-Length; 0: no cap",
    )
    run.add_argument(
        "--speed-limit",
        type=number(float, 0, low_open=False),
        default=DOWNLOAD.speed_limit,
        help="bytes a second under which, for --speed-time, a download try is abandoned",
    )
    run.add_argument(
        "--speed-time",
        type=positive(float, DAY),
        default=DOWNLOAD.speed_time,
        help="seconds a download may stay under --speed-limit (or get nothing)",
    )
    run.add_argument(
        "--outage-timeout",
        type=positive(float, 7 * DAY),
        default=POLL.outage_timeout,
        help="seconds the API or storage may be unreachable before the run stops, exit 3",
    )
    run.add_argument(
        "--max-pause",
        type=positive(float, DAY),
        default=POLL.max_pause,
        help="longest pause a 429's Retry-After may impose, in seconds",
    )
    run.add_argument(
        "--max-gap",
        type=positive(float, DAY),
        default=POLL.max_gap,
        help=f"while list sweeps run, longest a pending job may go unread, in seconds "
        f"({POLL.max_gap:g})",
    )
    run.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    run.add_argument(
        "--grace",
        type=positive(float, DAY),
        default=default(RunConfig, "grace"),
        help="after SIGINT/SIGTERM, seconds downloads under way may take to finish",
    )
    run.add_argument(
        "--quiet",
        action="store_true",
        help="only warnings and errors: no progress, no summary (the exit code says the result)",
    )
    run.add_argument(
        "--progress-interval",
        type=positive(float, DAY),
        default=LOGS.progress_interval,
        help=f"seconds between progress reports (default: {LOGS.terminal_interval:g} on a "
        f"terminal, else {LOGS.log_interval:g})",
    )
    run.add_argument(
        "--log-level",
        default=LOGS.level,
        choices=["debug", "info", "warning", "error"],
        help="least severe log events shown",
    )
    run.add_argument(
        "--log-format",
        default=LOGS.format,
        choices=["auto", "console", "json"],
        help="console on a terminal, JSON lines otherwise (auto), or either",
    )
    metrics = run.add_argument_group("metrics (Prometheus)")
    metrics.add_argument(
        "--pushgateway",
        metavar="URL",
        help="push metrics to this Pushgateway every --push-interval seconds and at the end",
    )
    metrics.add_argument(
        "--push-interval",
        type=positive(float, DAY),
        default=METRICS.push_interval,
        help="seconds between pushes",
    )
    metrics.add_argument("--metrics-port", type=PORT, help="serve /metrics on this port")
    metrics.add_argument(
        "--metrics-host", default=METRICS.host, help="address --metrics-port listens on"
    )
    metrics.add_argument(
        "--metrics-textfile",
        metavar="PATH",
        help="write the metrics here at exit, for node-exporter's textfile collector",
    )
    metrics.add_argument(
        "--metrics-batch",
        metavar="NAME",
        help="the batch label of pushed metrics (default: the --out folder's name)",
    )


def _where(
    args: argparse.Namespace, env: Mapping[str, str]
) -> tuple[Path, Path | None, BucketUrl | None]:
    """The local folder files are written to, the manifest, and the bucket they go on to.

    A bucket `--out` keeps the ledger in the bucket: the local folder is a spool under the
    system's temporary folder (checked files wait there for their upload) holding this run's
    copy of the ledger, so `--manifest` is refused with it.
    """
    bucket = BucketUrl.parse(str(args.out))
    if bucket is None:
        out = Path(args.out)
        manifest = None if args.manifest == "-" else Path(args.manifest or out / "manifest.jsonl")
        return out, manifest, None
    if args.manifest is not None:
        raise ConfigError(
            f"--manifest: with --out {bucket} the ledger lives in the bucket "
            f"({bucket.key('manifest/')}); leave --manifest out"
        )
    store_options(bucket, env)  # missing bucket credentials: said now, before any work
    tag = hashlib.sha256(str(bucket).encode()).hexdigest()[:12]
    spool = Path(tempfile.gettempdir()) / "watcher-spool" / f"{bucket.bucket}-{tag}"
    return spool, spool / "manifest.jsonl", bucket


def build_config(args: argparse.Namespace, env: Mapping[str, str], home: Path | None) -> RunConfig:
    """The run's config from parsed flags and the environment; ConfigError names the culprit."""
    api = api_config(args, env, home)
    check_inputs(args.inputs)
    check_template(args.name)
    out, manifest, bucket = _where(args, env)
    attempts = int(args.max_retries) + 1
    rate = args.shard.rate(args.rate) if args.shard else args.rate
    return RunConfig(
        api=api,
        out_dir=out,
        manifest=manifest,
        poll=replace(
            POLL,
            cadence=args.cadence,
            rate=rate,
            job_timeout=args.job_timeout,
            retry=replace(POLL.retry, attempts=attempts),
            strategy=args.poll,
            max_pause=args.max_pause,
            outage_timeout=args.outage_timeout,
            max_gap=max(args.max_gap, args.cadence),
        ),
        download=replace(
            DOWNLOAD,
            workers=int(args.download_workers),
            retry=replace(DOWNLOAD.retry, attempts=attempts),
            max_file_bytes=int(args.max_file_bytes) or None,  # 0: no cap
            speed_limit=float(args.speed_limit),
            speed_time=float(args.speed_time),
            outage_timeout=args.outage_timeout,
            verify_tls=not args.insecure,
            kinds=args.files,
        ),
        retry_failed=args.retry_failed,
        grace=args.grace,
        name_template=args.name,
        shard=args.shard,
        verify=args.verify,
        bucket=bucket,
    )


def log_config(args: argparse.Namespace) -> LogConfig:
    """What the run tells whoever watches it, from --log-level, --log-format, --quiet and
    --progress-interval."""
    return replace(
        LOGS,
        level=args.log_level,
        format=args.log_format,
        quiet=args.quiet,
        progress_interval=args.progress_interval,
    )


def metrics_config(args: argparse.Namespace) -> MetricsConfig:
    """Where the run's metrics go, from the metrics flags; ConfigError names a bad one."""
    gateway = args.pushgateway
    if gateway and urlsplit(gateway).scheme not in ("http", "https"):
        raise ConfigError(f"--pushgateway {gateway!r}: not an http(s) URL")
    batch = args.metrics_batch or Path(str(args.out)).name or METRICS.batch
    shard = None if args.shard is None else str(args.shard.index)
    return replace(
        METRICS,
        pushgateway=gateway or None,
        port=args.metrics_port,
        host=args.metrics_host,
        textfile=args.metrics_textfile,
        batch=batch,
        shard=shard,
        push_interval=args.push_interval,
    )


def _hooks(config: LogConfig) -> tuple[Hooks, TerminalProgress | None]:
    """Progress as the person watching needs it: a live status line on a terminal (when the logs
    are for a person too), `progress` log events otherwise, nothing with --quiet."""
    if config.quiet:
        return Hooks(), None
    if on_terminal(sys.stderr) and not logs.is_json(config.format):
        terminal = TerminalProgress(Screen(sys.stderr))
        interval = config.progress_interval or config.terminal_interval
        return Hooks(on_progress=terminal, progress_interval=interval), terminal
    interval = config.progress_interval or config.log_interval
    return Hooks(on_progress=log_progress, progress_interval=interval), None


def _with_metrics(hooks: Hooks, metrics: Metrics) -> Hooks:
    """`hooks`, also feeding `metrics` every result and progress snapshot."""
    show = hooks.on_progress

    def progress(snapshot: Snapshot) -> None:
        metrics.on_progress(snapshot)
        if show is not None:
            show(snapshot)

    interval = hooks.progress_interval if show is not None else METRICS_PROGRESS_INTERVAL
    return replace(
        hooks, on_result=metrics.on_result, on_progress=progress, progress_interval=interval
    )


class _Counted:
    """The run's input, counting the lines that held a job or a bad line."""

    def __init__(self, items: AsyncIterator[Job | InputError]) -> None:
        self._items = items
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[Job | InputError]:
        async for item in self._items:
            self.read += 1
            yield item


async def _watch_until_signalled(
    config: RunConfig,
    inputs: AsyncIterator[Job | InputError],
    hooks: Hooks,
    publisher: Publisher | None = None,
) -> Summary | None:
    """Run `watch`; the first SIGINT/SIGTERM stops it gently, within `config.grace` seconds, a
    second one at once. None when a signal stopped it. `publisher` pushes metrics meanwhile."""
    stop = anyio.Event()
    scope = anyio.CancelScope()

    async def on_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
            async for signum in received:
                if stop.is_set():
                    log.warning("second signal: stopping now", signal=signum.name)
                    scope.cancel()
                    return
                log.warning("stopping: finishing downloads under way", grace_s=config.grace)
                stop.set()
                scope.deadline = anyio.current_time() + config.grace

    summary = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(on_signals)
            if publisher is not None:
                tg.start_soon(publisher.push_periodically)
            with scope:
                summary = await watch(config, inputs, stop, hooks)
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise unwrap(group) from None
    return None if stop.is_set() else summary


def run(args: argparse.Namespace) -> int:
    """Watch the jobs of `args.inputs`: 0 when every job SUCCEEDed, 1 when some did not, 130
    after a signal; raises for every other outcome (`watcher.cli.main` reports it)."""
    config = build_config(args, os.environ, Path.home())
    metrics = metrics_config(args)
    shown = log_config(args)
    hooks, terminal = _hooks(shown)
    logs.configure(
        level=shown.effective_level,
        fmt=args.log_format,
        secrets=config.api.credentials.secrets(),
        screen=None if terminal is None else terminal.screen,
    )
    publisher = None
    if metrics.enabled:
        registry = Metrics()
        hooks = _with_metrics(hooks, registry)
        publisher = Publisher(registry, metrics)
        try:
            publisher.serve()
        except OSError as exc:
            raise ConfigError(
                f"--metrics-port {metrics.port}: cannot listen: {exc.strerror or exc}"
            ) from exc
    try:
        code = _watched(args, config, hooks, terminal, publisher)
    except BaseException as exc:
        if publisher is not None:
            publisher.final(exits.outcome(exc).code)
        raise
    if publisher is not None:
        publisher.final(code)
    return code


def _watched(
    args: argparse.Namespace,
    config: RunConfig,
    hooks: Hooks,
    terminal: TerminalProgress | None,
    publisher: Publisher | None,
) -> int:
    """The run itself, its summary and its exit code."""
    started = time.monotonic()
    inputs = _Counted(read_inputs(args.inputs))
    try:
        summary = loop.run(_watch_until_signalled, config, aiter(inputs), hooks, publisher)
    finally:
        if terminal is not None:
            terminal.close()
    if summary is not None and inputs.read == 0:  # exits.py says it as a warning, exit 4
        where = ", ".join(args.inputs) or "stdin"
        raise NoJobsError(
            f"no job in the input ({where}): an empty file, a closed stdin, or a submitter "
            "that printed nothing"
        )
    if summary is None:
        print(
            "watcher: interrupted; jobs not final were left out of the manifest, "
            "so running the same command again picks them up",
            file=sys.stderr,
        )
        return int(Exit.INTERRUPTED)
    stats = summary.polls
    counts = report.RunCounts(
        api_requests=stats.requests + stats.list_requests,
        retries=summary.retries,
        throttled=stats.throttled,
        elapsed_s=time.monotonic() - started,
    )
    batch = summary.batch
    report.emit_summary(
        report.Report.from_tally(summary.tally),
        counts,
        batch=batch,
        cadence_s=stats.effective_cadence,
        quiet=args.quiet,
        json=logs.is_json(args.log_format),
    )
    return Exit.OK if batch.ok else Exit.JOBS_FAILED
