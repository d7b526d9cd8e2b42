"""`watcher run` and `watcher sim`: flags -> config -> run. The only place errors become exit codes.

0    every job SUCCEEDed and its files are saved
1    some job ended otherwise (FAILED, ERROR, TIMEOUT, INVALID)
2    usage, configuration or authentication error
130  interrupted
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

from watcher import __version__, logs
from watcher.config import REGIONS, ApiConfig, DownloadPolicy, PollPolicy, RunConfig
from watcher.credentials import discover
from watcher.errors import AuthError, ConfigError, WatcherError
from watcher.inputs import read_inputs
from watcher.sim import cli as sim_cli
from watcher.watch import Summary, watch

PROJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


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
    where = run.add_mutually_exclusive_group()
    where.add_argument("--endpoint", help="API base URL, e.g. http://127.0.0.1:8080")
    where.add_argument("--region", default="cn-north-4", help=f"one of {', '.join(REGIONS)}")
    run.add_argument("--project-id", help="else HUAWEICLOUD_SDK_PROJECT_ID or the credentials file")
    run.add_argument("--auth-token-file", type=Path, help="file holding an IAM token")
    run.add_argument(
        "--cadence", type=_positive(float), default=3.0, help="seconds between polls of a job (3)"
    )
    run.add_argument(
        "--rate", type=_positive(float), default=10.0, help="API requests per second, shared (10)"
    )
    run.add_argument(
        "--download-workers", type=_positive(int), default=8, help="jobs downloaded at once (8)"
    )
    run.add_argument("--job-timeout", type=_positive(float), help="seconds before a job is TIMEOUT")
    run.add_argument(
        "--request-timeout", type=_positive(float), default=30.0, help="per API request (30)"
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-format", default="auto", choices=["auto", "console", "json"])

    sim = sub.add_parser("sim", help="run the bundled MetaStudio simulator until interrupted")
    sim_cli.add_arguments(sim)
    return parser


def build_config(args: argparse.Namespace, env: dict[str, str], home: Path | None) -> RunConfig:
    """The run's config from parsed flags and the environment; ConfigError names the culprit."""
    if args.endpoint:
        if not re.match(r"https?://[^/]+", args.endpoint):
            raise ConfigError(f"--endpoint {args.endpoint!r} is not an http(s) URL")
        endpoint = args.endpoint
    elif args.region in REGIONS:
        endpoint = REGIONS[args.region]
    else:
        raise ConfigError(
            f"--region {args.region!r} is unknown: use one of {', '.join(REGIONS)}, "
            "or --endpoint URL"
        )
    found = discover(env, home, args.auth_token_file)
    if found is None:
        raise ConfigError(
            "no credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK (or CLOUD_SDK_AK/_SK), "
            "METASTUDIO_AUTH_TOKEN, --auth-token-file, or ~/.huaweicloud/credentials [basic]"
        )
    project_id = args.project_id or found.project_id
    if not project_id:
        raise ConfigError("no project id: give --project-id or set HUAWEICLOUD_SDK_PROJECT_ID")
    if not PROJECT_ID.fullmatch(project_id):
        raise ConfigError("--project-id must be letters, digits, '_' or '-' (at most 64)")
    for path in args.inputs:
        if path != "-" and not Path(path).is_file():
            raise ConfigError(f"input {path!r}: no such file")
    manifest = None if args.manifest == "-" else Path(args.manifest or args.out / "manifest.jsonl")
    return RunConfig(
        api=ApiConfig(endpoint, project_id, found.credentials, args.request_timeout),
        out_dir=args.out,
        manifest=manifest,
        poll=PollPolicy(cadence=args.cadence, rate=args.rate, job_timeout=args.job_timeout),
        download=DownloadPolicy(workers=int(args.download_workers)),
    )


def _summary_line(summary: Summary, seconds: float) -> str:
    counts = (
        ", ".join(f"{n} {status}" for status, n in sorted(summary.tally.statuses.items()))
        or "no jobs"
    )
    t = summary.tally
    return (
        f"watcher: {counts}; {t.files} files, {t.bytes / 1e6:.1f} MB saved; "
        f"{summary.polls.requests} API requests ({summary.polls.throttled} throttled); "
        f"{seconds:.1f} s"
    )


def _run(args: argparse.Namespace) -> int:
    config = build_config(args, dict(os.environ), Path.home())
    logs.configure(
        level=args.log_level, fmt=args.log_format, secrets=config.api.credentials.secrets()
    )
    started = time.monotonic()
    summary = anyio.run(watch, config, read_inputs(args.inputs))
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
