"""`watcher sim`: run the simulator until SIGINT or SIGTERM.

The first line on stdout is the base URL (flushed at once), so a script can start it on port 0 and
read where it listens; everything else goes to stderr. Credentials are found as `watcher run`
finds them (`watcher._credentials.discover`), so one set of exports serves both; flags override.
With none found, the demo credentials are accepted and printed as `export` lines to paste. Secrets
that came from the environment, a file or a flag are never printed.

`--fault NAME=RATE` (repeatable) and `--slow-seconds` inject faults (see `watcher.sim.faults`).

Exit status: 0 after a signal; 2 for unusable flags (a bad `--fault` or `--port` among them),
credentials or preload file, or a port that cannot be bound. `run` raises; `watcher._exits` (via
`watcher sim` or `main` here) turns the error into the message and the code.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import anyio

from watcher import _exits as exits
from watcher._auth import AkSk, Token
from watcher._credentials import discover
from watcher._errors import ConfigError, InputError
from watcher._inputs import Job, parse_line
from watcher._options import DAY, PORT, number, positive
from watcher.sim.config import DEMO_AK, DEMO_PROJECT_ID, DEMO_SK, SimConfig
from watcher.sim.faults import DEFAULT_SLOW_SECONDS, Fault, plan_from_specs

PROG = "watcher sim"
FAULT_NAMES = ", ".join(Fault)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's flags to `parser`."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--port", type=PORT, default=0, help="port to listen on (default 0: any free port)")
    add("--seed", type=int, default=0, help="seed for created job ids (default 0)")
    add(
        "--time-scale",
        type=number(float, 0, 1000, low_open=False),
        default=1.0,
        help="multiply every simulated duration (0.01 = 100x faster; default 1)",
    )
    add(
        "--slots",
        type=positive(int, 10_000),
        default=4,
        help="jobs synthesised at once (default 4)",
    )
    add(
        "--url-ttl",
        type=positive(float, 7 * DAY),
        default=3600.0,
        help="seconds a result link stays valid, real time (default 3600)",
    )
    add(
        "--fail-percent",
        type=number(int, 0, 100, low_open=False),
        default=10,
        help="share of job ids that fail (default 10)",
    )
    add(
        "--rate-limit",
        type=positive(float, 1_000_000),
        default=None,
        help="requests per second per API before 429 APIGW.0308 (default: unlimited)",
    )
    add(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=RATE",
        help=f"inject a fault at a rate from 0 to 1 (repeatable); NAME is one of {FAULT_NAMES}",
    )
    add(
        "--slow-seconds",
        type=number(float, -math.inf),  # finite; its range is checked with the fault plan
        default=None,
        help=f"real seconds a 'slow' fault delays an answer (default {DEFAULT_SLOW_SECONDS:g})",
    )
    add("--preload", metavar="FILE", help="job ids to know from the start (watcher input format)")
    add(
        "--storage-latency",
        type=number(float, 0, 60, low_open=False),
        default=0.0,
        help="seconds before the first byte of every storage answer (default 0)",
    )
    add(
        "--storage-bandwidth",
        type=positive(float, 1e12),
        default=None,
        help="bytes a second each storage download is sent at, at most (default: no cap)",
    )
    add(
        "--random-order",
        action="store_true",
        help="synthesise preloaded jobs in a random order (from --seed), not creation order",
    )
    add("--ak", help="accept this access key (with --sk) instead of the environment's")
    add("--sk", help="the secret key for --ak")
    add("--project-id", help="accept this project id")
    add("--token", help="accept this IAM token (X-Auth-Token) instead of AK/SK")


def resolve_credentials(
    args: argparse.Namespace, env: dict[str, str], home: Path | None
) -> tuple[AkSk | Token, str, list[str]]:
    """The credentials and project id to accept, and the lines to tell the user on stderr.

    Raises ConfigError for half-set flags or environment.
    """
    credentials: AkSk | Token | None = None
    project_id: str | None = args.project_id
    source = ""
    if args.token:
        credentials, source = Token(args.token), "--token"
    elif args.ak or args.sk:
        if not (args.ak and args.sk):
            raise ConfigError("--ak and --sk go together: give both or neither")
        credentials, source = AkSk(args.ak, args.sk), "--ak/--sk"
    elif (found := discover(env, home)) is not None:
        credentials, source = found.credentials, found.source
        project_id = project_id or found.project_id
    if credentials is None:
        project_id = project_id or DEMO_PROJECT_ID
        return (
            AkSk(DEMO_AK, DEMO_SK),
            project_id,
            [
                f"{PROG}: no credentials found; accepting the demo ones. Paste this to use them:",
                f"export HUAWEICLOUD_SDK_AK={DEMO_AK} HUAWEICLOUD_SDK_SK={DEMO_SK}"
                f" HUAWEICLOUD_SDK_PROJECT_ID={project_id}",
            ],
        )
    notes = []
    if project_id is None:
        project_id = DEMO_PROJECT_ID
        notes.append(
            f"{PROG}: no project id found (HUAWEICLOUD_SDK_PROJECT_ID or --project-id);"
            f" accepting {project_id}"
        )
    what = "an IAM token" if isinstance(credentials, Token) else f"AK {credentials.ak}"
    notes.insert(0, f"{PROG}: accepting {what} from {source}, project {project_id}")
    return credentials, project_id, notes


def read_preload(path: str, err: IO[str]) -> list[Job]:
    """The jobs in `path` (`-` is stdin); each bad line is reported on `err` and skipped.

    Raises ConfigError when the file cannot be read.
    """
    jobs: list[Job] = []
    try:
        stream = sys.stdin if path == "-" else open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ConfigError(f"--preload {path}: {exc.strerror}") from exc
    try:
        for number, line in enumerate(stream, 1):
            try:
                job = parse_line(line, path, number)
            except InputError as exc:
                print(f"{PROG}: skipped {exc}", file=err)
                continue
            if job is not None:
                jobs.append(job)
    finally:
        if stream is not sys.stdin:
            stream.close()
    return jobs


async def _serve_until_signal(
    config: SimConfig, jobs: list[Job], host: str, port: int, out: IO[str], err: IO[str]
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        from watcher.sim.server import serve  # aiohttp.web: only for `watcher sim`

        async with serve(config, preload=jobs, host=host, port=port) as running:
            print(running.url, file=out, flush=True)
            print(
                f"{PROG}: listening at {running.url} with {len(running.sim.jobs)} preloaded"
                " jobs; stop with Ctrl-C",
                file=err,
                flush=True,
            )
            async for signum in signals:
                print(f"{PROG}: {signal.Signals(signum).name}, stopping", file=err, flush=True)
                break


def run(args: argparse.Namespace) -> int:
    """Run the simulator described by `args` (from `add_arguments`) until SIGINT or SIGTERM.

    Raises ConfigError for unusable flags, credentials, preload file or port."""
    out, err = sys.stdout, sys.stderr
    credentials, project_id, notes = resolve_credentials(args, dict(os.environ), Path.home())
    try:
        faults = plan_from_specs(args.fault, slow_seconds=args.slow_seconds)
        config = SimConfig(
            project_id=project_id,
            credentials=credentials,
            seed=args.seed,
            time_scale=args.time_scale,
            slots=args.slots,
            url_ttl=args.url_ttl,
            fail_percent=args.fail_percent,
            rate_limit=args.rate_limit,
            faults=faults,
            random_order=args.random_order,
            storage_latency=args.storage_latency,
            storage_bandwidth=args.storage_bandwidth,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    jobs = read_preload(args.preload, err) if args.preload else []
    if active := config.faults.active:
        rates = ", ".join(f"{fault}={rate:g}" for fault, rate in active.items())
        notes.append(f"{PROG}: injecting faults {rates} (seed {config.seed})")
    for note in notes:
        print(note, file=err)
    try:
        anyio.run(_serve_until_signal, config, jobs, args.host, args.port, out, err)
    except OSError as exc:
        if exits.outcome(exc).message is None:  # stdout closed: not the port's fault
            raise
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from exc
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m watcher.sim [flags]`: the same as `watcher sim`."""
    parser = argparse.ArgumentParser(prog=PROG, description="Run the MetaStudio simulator.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except SystemExit:
        raise
    except BaseException as exc:  # the same table as `watcher sim`
        return exits.report(exc, PROG)


if __name__ == "__main__":
    raise SystemExit(main())
