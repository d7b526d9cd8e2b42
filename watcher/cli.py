"""The command line: `main(argv)` builds the parser, layers the settings, runs the command, and is
the only place errors become exit codes, through the one table of `_exits.py`, for every
subcommand. The commands themselves are `watcher._commands`, one module each.

0    every input job's counting line in the manifest is SUCCEED, its files intact (the whole
     batch: jobs an earlier run settled count with their line)
1    some input job's counting line is otherwise (FAILED, ERROR, TIMEOUT, INVALID)
2    usage, configuration or authentication error; the manifest or --out unusable or locked
3    the API or storage stayed unreachable past --outage-timeout
4    the input held no job at all
130  interrupted
141  stdout was closed (`| head`): the command stopped quietly
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from watcher import __version__
from watcher import _exits as exits
from watcher._commands import COMMANDS
from watcher._commands.run import build_config
from watcher._options import DefaultsHelp
from watcher._settings import apply

__all__ = ["build_config", "build_parser", "build_parsers", "main"]


def build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser, and each subcommand's by name (for its own usage and settings).

    Each subcommand's parser has the defaults `func` (its `run`) and `layered` (the function
    adding the flags whose values may also come from variables and a file; None: flags only).
    """
    parser = argparse.ArgumentParser(
        prog="watcher", description="Watch batches of MetaStudio async TTS jobs."
    )
    parser.add_argument("--version", action="version", version=f"watcher {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subparsers = {}
    for command in COMMANDS:
        subparsers[command.name] = sub.add_parser(
            command.name,
            help=command.help,
            description=command.help,
            allow_abbrev=False,
            formatter_class=DefaultsHelp,
        )
        command.add_arguments(subparsers[command.name])
        subparsers[command.name].set_defaults(
            func=command.run, layered=command.add_arguments if command.layered else None
        )
    return parser, subparsers


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    return build_parsers()[0]


def _warn(message: str) -> None:
    print(f"watcher: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None, *, prog: str = "watcher") -> int:
    """Run the command line; return the exit code (`_exits.py` maps every exception to one).

    A layered command's flags are completed from `WATCHER_*` variables and the `--config` file
    (`_settings.apply`), which leaves where each value came from in `args.origins`. `prog`
    starts every message (`python -m watcher.sim` says `watcher sim`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = build_parsers()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the subcommand's usage, not the top level's, says what it takes
        subparsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if args.layered is not None:
            args.origins = apply(args.layered, args, argv, os.environ, warn=_warn)
        return int(args.func(args))
    except SystemExit:
        raise
    except BaseException as exc:  # the one place every error becomes an exit code
        return exits.report(exc, prog)
