"""The simulator's command-line side: the credentials `watcher sim` accepts, its preload file, and
serving until SIGINT or SIGTERM. Its flags and the command itself are `watcher._commands.sim`.

The first line on stdout is the base URL (flushed at once), so a script can start it on port 0 and
read where it listens; everything else goes to stderr. Credentials are found as `watcher run`
finds them (`watcher._credentials.discover`), so one set of exports serves both; flags override.
With none found, the demo credentials are accepted and printed as `export` lines to paste. Secrets
that came from the environment, a file or a flag are never printed.

`python -m watcher.sim [flags]` (`watcher/sim/__main__.py`) is `watcher sim` under another name;
`watcher.cli.main` turns its errors into exit codes as for every command.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import IO

import anyio

from watcher._auth import AkSk, Token
from watcher._credentials import discover
from watcher._errors import ConfigError, InputError
from watcher._inputs import Job, parse_line
from watcher.sim.config import DEMO_AK, DEMO_PROJECT_ID, DEMO_SK, SimConfig

PROG = "watcher sim"


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


def serve(
    config: SimConfig, jobs: list[Job], host: str, port: int, out: IO[str], err: IO[str]
) -> None:
    """Serve `config` with `jobs` preloaded on `host:port` until SIGINT or SIGTERM; the URL goes
    to `out`, the rest to `err`. ConfigError when the port cannot be bound."""
    try:
        anyio.run(_serve_until_signal, config, jobs, host, port, out, err)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # stdout closed: not the port's fault
            raise
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
