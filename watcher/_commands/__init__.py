"""The subcommands of `watcher`, one module each, in the order `watcher --help` lists them.

Each module owns its flags (`add_arguments(parser)`) and one `run(args) -> int` that only reads
the parsed flags, builds config objects and calls the library; every flag's default comes from
those config objects (`_config.py`, `SubmitPolicy`, `MetricsConfig`, `SimConfig`). None of them
turns an error into an exit code: they raise, and `watcher.cli.main` does that for all of them.
`layered` marks the commands whose flags can also come from `WATCHER_*` variables and a
`--config` file (`_settings.py`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from watcher._commands import config, merge, report, run, sim, submit


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: its name and one-line help, its flags, what it runs, whether its
    settings are layered."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    layered: bool = False


COMMANDS = (
    Command(
        "run",
        "watch jobs until final, save their files, write a manifest",
        run.add_arguments,
        run.run,
        layered=True,
    ),
    Command(
        "submit", "create TTS jobs from texts and print their ids", submit.add_arguments, submit.run
    ),
    Command("report", "summarise a manifest", report.add_arguments, report.run),
    Command(
        "merge", "combine the manifests of several shards or runs", merge.add_arguments, merge.run
    ),
    Command(
        "config",
        "print the effective settings of `watcher run`",
        config.add_arguments,
        config.run,
        layered=True,
    ),
    Command("sim", "run the bundled MetaStudio simulator", sim.add_arguments, sim.run),
)
