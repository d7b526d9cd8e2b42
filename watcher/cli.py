"""The command line: flags -> config -> run. The only place errors become exit codes.

0    every job SUCCEEDed and its files are saved
1    some job ended otherwise (FAILED, ERROR, TIMEOUT, INVALID)
2    usage, configuration or authentication error
130  interrupted
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import anyio
import structlog

from watcher import __version__, logs
from watcher.config import DownloadPolicy, PollPolicy, RunConfig
from watcher.errors import AuthError, ConfigError, WatcherError, first_watcher_error
from watcher.inputs import read_inputs
from watcher.options import add_api_arguments, api_config, positive
from watcher.sim import cli as sim_cli
from watcher.watch import Summary, watch

log = structlog.get_logger("watcher.cli")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="watcher", description="Watch batches of MetaStudio async TTS jobs."
    )
    parser.add_argument("--version", action="version", version=f"watcher {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="watch jobs until final, save their files, write a manifest")
    run.add_argument("inputs", nargs="*", metavar="INPUT", help="job id files; '-' or none: stdin")
    run.add_argument(
        "--out", type=Path, default=Path("tts-out"), help="folder for files (./tts-out)"
    )
    run.add_argument("--manifest", help="manifest path (OUT/manifest.jsonl); '-' for stdout")
    add_api_arguments(run)
    run.add_argument(
        "--cadence", type=positive(float), default=3.0, help="seconds between polls of a job (3)"
    )
    run.add_argument(
        "--rate", type=positive(float), default=10.0, help="API requests per second, shared (10)"
    )
    run.add_argument(
        "--download-workers", type=positive(int), default=8, help="jobs downloaded at once (8)"
    )
    run.add_argument(
        "--poll",
        choices=["auto", "single", "list"],
        default="auto",
        help="single GETs, list-call sweeps, or list sweeps when single GETs cannot keep up (auto)",
    )
    run.add_argument("--job-timeout", type=positive(float), help="seconds before a job is TIMEOUT")
    run.add_argument(
        "--max-retries",
        type=positive(int),
        default=5,
        help="transient errors in a row a job or file may have before it is ERROR (5)",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="watch FAILED/ERROR/TIMEOUT jobs of the manifest again",
    )
    run.add_argument("--max-file-bytes", type=positive(int), help="refuse larger downloads")
    run.add_argument(
        "--insecure", action="store_true", help="do not verify TLS certificates (not advised)"
    )
    run.add_argument(
        "--grace",
        type=positive(float),
        default=10.0,
        help="after SIGINT/SIGTERM, seconds downloads under way may take to finish (10)",
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-format", default="auto", choices=["auto", "console", "json"])

    sim = sub.add_parser("sim", help="run the bundled MetaStudio simulator until interrupted")
    sim_cli.add_arguments(sim)
    return parser


def build_config(args: argparse.Namespace, env: Mapping[str, str], home: Path | None) -> RunConfig:
    """The run's config from parsed flags and the environment; ConfigError names the culprit."""
    api = api_config(args, env, home)
    for path in args.inputs:
        if path != "-" and not Path(path).is_file():
            raise ConfigError(f"input {path!r}: no such file")
    manifest = None if args.manifest == "-" else Path(args.manifest or args.out / "manifest.jsonl")
    attempts = int(args.max_retries) + 1
    return RunConfig(
        api=api,
        out_dir=args.out,
        manifest=manifest,
        poll=PollPolicy(
            cadence=args.cadence,
            rate=args.rate,
            job_timeout=args.job_timeout,
            retry=replace(PollPolicy().retry, attempts=attempts),
            strategy=args.poll,
        ),
        download=DownloadPolicy(
            workers=int(args.download_workers),
            retry=replace(DownloadPolicy().retry, attempts=attempts),
            max_file_bytes=None if args.max_file_bytes is None else int(args.max_file_bytes),
            verify_tls=not args.insecure,
        ),
        retry_failed=args.retry_failed,
        grace=args.grace,
    )


def _summary_line(summary: Summary, seconds: float) -> str:
    counts = (
        ", ".join(f"{n} {status}" for status, n in sorted(summary.tally.statuses.items()))
        or "no jobs"
    )
    t = summary.tally
    return (
        f"watcher: {counts}; {t.files} files, {t.bytes / 1e6:.1f} MB saved; "
        f"{summary.polls.requests} API requests ({summary.polls.throttled} throttled, "
        f"{summary.polls.retries} retried); {summary.resume.skipped} already done; "
        f"{seconds:.1f} s"
    )


async def _watch_until_signalled(config: RunConfig, inputs: list[str]) -> Summary | None:
    """Run `watch`; the first SIGINT/SIGTERM stops it gently, within `config.grace` seconds, a
    second one at once. None when a signal stopped it."""
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
            with scope:
                summary = await watch(config, read_inputs(inputs), stop)
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise first_watcher_error(group) or group from None
    return None if stop.is_set() else summary


def _run(args: argparse.Namespace) -> int:
    config = build_config(args, dict(os.environ), Path.home())
    logs.configure(
        level=args.log_level, fmt=args.log_format, secrets=config.api.credentials.secrets()
    )
    started = time.monotonic()
    summary = anyio.run(_watch_until_signalled, config, args.inputs)
    if summary is None:
        print(
            "watcher: interrupted; jobs not final were left out of the manifest, "
            "so running the same command again picks them up",
            file=sys.stderr,
        )
        return 130
    print(_summary_line(summary, time.monotonic() - started), file=sys.stderr)
    return 0 if summary.tally.all_succeeded else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "sim":
            return sim_cli.run(args)
        return _run(args)
    except ConfigError as exc:
        print(f"watcher: error: {exc}", file=sys.stderr)
        return 2
    except AuthError as exc:
        print(
            f"watcher: authentication failed: {exc} (request id {exc.request_id}). "
            "Jobs not final were not written to the manifest; rerun once the credentials work.",
            file=sys.stderr,
        )
        return 2
    except WatcherError as exc:
        print(f"watcher: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"watcher: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("watcher: interrupted", file=sys.stderr)
        return 130
