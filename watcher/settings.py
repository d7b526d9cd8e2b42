"""Settings from three places, in order of precedence: flags, `WATCHER_*` variables, a TOML file.

Every option of a subcommand can be set in each place under its flag's name: `--download-workers
4`, `WATCHER_DOWNLOAD_WORKERS=4`, or `download-workers = 4` (or `download_workers`) in the file
given by `--config` / `WATCHER_CONFIG`, in a `[run]` table or at the top level. Values from the
environment and the file go through the same type checks as flags, and an error names where the
bad value came from. Credentials are never settings: they have their own variables (see
`credentials.py`). `origins` tells where each effective value came from, for `watcher config`.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from watcher.errors import ConfigError

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})
NOT_SETTINGS = frozenset({"help", "config", "version"})


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest not in NOT_SETTINGS]


def given_on_command_line(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The destinations of the options that `argv` sets (the parser must not allow abbrevs)."""
    given = set()
    for word in argv:
        if word == "--":
            break
        if word.startswith("--"):
            action = parser._option_string_actions.get(word.split("=", 1)[0])
            if action is not None:
                given.add(action.dest)
    return given


def _convert(action: argparse.Action, value: object, origin: str) -> object:
    if action.nargs == 0:  # a switch such as --insecure
        text = str(value).strip().lower()
        if isinstance(value, bool) or text in TRUE | FALSE:
            return value if isinstance(value, bool) else text in TRUE
        raise ConfigError(f"{origin}: expected true or false, not {value!r}")
    text = str(value)
    try:
        converted = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigError(f"{origin}: {value!r} is not one of {choices}")
    return converted


def read_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML file: its `[run]` table, else its top-level values."""
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML: {exc}") from exc
    table = doc.get("run", doc)
    if not isinstance(table, dict):
        raise ConfigError(f"--config {path}: [run] must be a table")
    return {k: v for k, v in table.items() if not isinstance(v, dict)}


def apply(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    argv: Sequence[str],
    env: Mapping[str, str],
) -> dict[str, str]:
    """Fill `args` from the environment and the config file where no flag was given.

    Returns where each option's value came from ("flag", "WATCHER_X", "file.toml", "default").
    ConfigError names a bad value's origin, or an unknown key in the file.
    """
    options = _options(parser)
    given = given_on_command_line(parser, argv)
    path = getattr(args, "config", None) or env.get("WATCHER_CONFIG")
    file_values = read_file(Path(path)) if path else {}
    by_key = {a.dest: a for a in options}
    for key in file_values:
        if key.replace("-", "_") not in by_key:
            raise ConfigError(f"--config {path}: unknown setting {key!r}")
    file_values = {k.replace("-", "_"): v for k, v in file_values.items()}
    origins: dict[str, str] = {}
    for action in options:
        dest = action.dest
        env_name = f"WATCHER_{dest.upper()}"
        if dest in given:
            origins[dest] = "flag"
        elif env_name in env:
            setattr(args, dest, _convert(action, env[env_name], env_name))
            origins[dest] = env_name
        elif dest in file_values:
            setattr(args, dest, _convert(action, file_values[dest], f"{path}: {dest}"))
            origins[dest] = str(path)
        else:
            origins[dest] = "default"
    return origins
