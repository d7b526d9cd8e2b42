"""`watcher config`: the effective settings of `watcher run`, as TOML, with where each came from.

It takes exactly the flags of `watcher run` (and reads the same variables and file, layered by
`watcher.cli.main` through `_settings.apply`, which leaves each setting's origin in
`args.origins`), builds the same `RunConfig` (so a setting `watcher run` would refuse is refused
here too), and prints one `key = value  # origin` line per setting, usable as a `--config`
file. Secrets are masked: only the first and last four characters of an access key are shown.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

from watcher._auth import AkSk
from watcher._commands import run as run_command

add_arguments = run_command.add_arguments


def mask(value: str) -> str:
    """`value` with all but its first and last four characters starred (all of a short one)."""
    return value[:4] + "*" * max(4, len(value) - 8) + value[-4:] if len(value) > 8 else "****"


def toml(value: object) -> str:
    """`value` as a TOML value: booleans, numbers, file kinds as "a,b", anything else a string."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, frozenset):
        value = ",".join(sorted(value))
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def run(args: argparse.Namespace) -> int:
    """Print the effective settings as TOML (usable with --config), secrets masked; 0."""
    origins: Mapping[str, str] = args.origins
    config = run_command.build_config(args, os.environ, Path.home())
    creds = config.api.credentials
    print("# Effective settings of `watcher run`: flag > WATCHER_* > --config file > default.")
    if isinstance(creds, AkSk):
        print(f"# credentials: AK {mask(creds.ak)}, SK ****")
    else:
        print("# credentials: IAM token ****")
    print(f"# endpoint: {config.api.endpoint}, project id: {config.api.project_id}")
    print("[run]")
    for dest, origin in origins.items():
        value = getattr(args, dest)
        key = dest.replace("_", "-")
        if value is None:
            print(f"# {key} = (not set)")
        else:
            print(f"{key} = {toml(value)}  # {origin}")
    return 0
