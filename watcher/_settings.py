"""Settings from three places, in order of precedence: flags, `WATCHER_*` variables, a TOML file.

Every option of a subcommand can be set in each place under its flag's name: `--download-workers
4`, `WATCHER_DOWNLOAD_WORKERS=4`, or `download-workers = 4` (or `download_workers`) in the file
given by `--config` / `WATCHER_CONFIG`, in a `[run]` table or at the top level. Values from the
environment and the file go through the same type checks as flags, and an error names where the
bad value came from (the flag, the variable, `--config FILE` or `WATCHER_CONFIG=FILE`). An unknown
key or table in the file is an error; an unknown `WATCHER_*` variable a warning (see
`unknown_variables`). Exclusive options (`--endpoint` / `--region`) are resolved across the
layers: the highest layer that sets either wins. Credentials are never settings: they have their
own variables (see `credentials.py`). `origins` tells where each effective value came from, for
`watcher config`.
"""

from __future__ import annotations

import argparse
import difflib
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from watcher._errors import ConfigError

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})
NOT_SETTINGS = frozenset({"help", "config", "version"})
_UNSET = object()


class Options:
    """The settings of one command, learnt from its flags through public argparse calls only.

    `add_arguments` adds the command's flags to a parser; each option `--some-name` (dest
    `some_name`) is a setting, a switch when its default is False. Values from the environment
    or a file are converted by parsing `--some-name=VALUE`, so they get the very checks a flag
    gets.
    """

    __slots__ = ("_parser", "dests", "switches")

    def __init__(self, add_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
        self._parser = argparse.ArgumentParser(
            add_help=False, allow_abbrev=False, exit_on_error=False
        )
        add_arguments(self._parser)
        defaults = vars(self._parser.parse_known_args([])[0])
        # in the order of the flags, which is how `watcher config` lists them
        self.dests = tuple(d for d in defaults if d not in NOT_SETTINGS and self._is_option(d))
        self.switches = frozenset(d for d in self.dests if defaults[d] is False)

    @staticmethod
    def flag(dest: str) -> str:
        """The flag that sets `dest`."""
        return "--" + dest.replace("_", "-")

    def _is_option(self, dest: str) -> bool:
        try:
            _, unknown = self._parser.parse_known_args([f"{self.flag(dest)}=x"])
        except argparse.ArgumentError:  # a switch given a value, or "x" of the wrong type
            return True
        return not unknown

    def given(self, argv: Sequence[str]) -> set[str]:
        """The settings that `argv` (the command's own words, already checked) sets."""
        namespace = argparse.Namespace(**dict.fromkeys(self.dests, _UNSET))
        self._parser.parse_known_args(list(argv), namespace)
        return {d for d in self.dests if getattr(namespace, d) is not _UNSET}

    def convert(self, dest: str, value: object, origin: str) -> object:
        """`value` (a string, or a TOML value) as the flag would take it; ConfigError names
        `origin`."""
        if dest in self.switches:  # a switch such as --insecure
            text = str(value).strip().lower()
            if isinstance(value, bool) or text in TRUE | FALSE:
                return value if isinstance(value, bool) else text in TRUE
            raise ConfigError(f"{origin}: expected true or false, not {value!r}")
        try:
            parsed, _ = self._parser.parse_known_args([f"{self.flag(dest)}={value}"])
        except argparse.ArgumentError as exc:
            raise ConfigError(f"{origin}: {exc.message}") from None
        return getattr(parsed, dest)


def read_file(path: Path, origin: str | None = None) -> dict[str, Any]:
    """The settings in a TOML file: its `[run]` table, else its top-level values.

    `origin` is how errors name the file (`--config FILE`, `WATCHER_CONFIG=FILE`). A table other
    than `[run]`, or values both in `[run]` and outside it, are refused by name: a misspelt
    `[runn]` must not be ignored.
    """
    origin = origin or f"--config {path}"
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except IsADirectoryError:
        raise ConfigError(f"{origin}: is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{origin}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{origin}: not UTF-8 (byte {exc.start + 1})") from exc
    tables = sorted(k for k, v in doc.items() if isinstance(v, dict) and k != "run")
    if tables:
        raise ConfigError(
            f"{origin}: unknown table {', '.join(f'[{t}]' for t in tables)}; "
            "settings go in [run] (or at the top level)"
        )
    if "run" not in doc:
        return doc
    if not isinstance(doc["run"], dict):
        raise ConfigError(f"{origin}: [run] must be a table")
    if outside := sorted(k for k in doc if k != "run"):
        raise ConfigError(f"{origin}: {', '.join(map(repr, outside))} outside [run]")
    table: dict[str, Any] = doc["run"]
    if nested := sorted(k for k, v in table.items() if isinstance(v, dict)):
        raise ConfigError(f"{origin}: unknown table {', '.join(f'[run.{t}]' for t in nested)}")
    return table


# Options that say the same thing two ways: the highest layer that sets one of them wins, and
# the other is dropped (`WATCHER_ENDPOINT=x watcher run --region cn-east-3` talks to cn-east-3).
EXCLUSIVE = (("endpoint", "region"),)
# Variables the watcher reads that are not flags of `watcher run`.
OTHER_VARIABLES = frozenset({"WATCHER_CONFIG", "WATCHER_DEBUG", "WATCHER_LOOP"})
RANK = {"flag": 0, "variable": 1, "file": 2, "default": 3}


def unknown_variables(env: Mapping[str, str], known: set[str]) -> list[str]:
    """Warnings for the `WATCHER_*` variables that are no setting, each with a likely meant one.

    Warnings, not errors: a Kubernetes Service named `watcher` puts WATCHER_PORT and
    WATCHER_SERVICE_HOST into every pod of its namespace, and that must not stop a run.
    """
    warnings = []
    for name in sorted(n for n in env if n.startswith("WATCHER_") and n not in known):
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{name} is not a setting of watcher run, ignored{hint}")
    return warnings


def apply(
    add_arguments: Callable[[argparse.ArgumentParser], None],
    args: argparse.Namespace,
    argv: Sequence[str],
    env: Mapping[str, str],
    warn: Callable[[str], None] = lambda message: None,
) -> dict[str, str]:
    """Fill `args` from the environment and the config file where no flag was given.

    `add_arguments` adds the command's flags to a parser; `argv` is the whole command line.

    Returns where each option's value came from ("flag", "WATCHER_X", "file.toml", "default").
    ConfigError names a bad value's origin, an unknown key or table in the file, or two exclusive
    options set in the same place; `warn` hears of unknown `WATCHER_*` variables.
    """
    options = Options(add_arguments)
    words = list(argv)
    given = options.given(words[words.index(args.command) + 1 :] if args.command in words else [])
    by_key = options.dests
    for message in unknown_variables(
        env, {f"WATCHER_{dest.upper()}" for dest in by_key} | OTHER_VARIABLES
    ):
        warn(message)
    flag_path = getattr(args, "config", None)
    path = flag_path or env.get("WATCHER_CONFIG")
    origin = f"--config {path}" if flag_path else f"WATCHER_CONFIG={path}"
    file_values = read_file(Path(path), origin) if path else {}
    for key in file_values:
        if key.replace("-", "_") not in by_key:
            names = [k.replace("_", "-") for k in by_key]
            close = difflib.get_close_matches(key.replace("_", "-"), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{origin}: unknown setting {key!r}{hint}")
    file_values = {k.replace("-", "_"): v for k, v in file_values.items()}
    origins: dict[str, str] = {}
    layers: dict[str, str] = {}
    for dest in options.dests:
        env_name = f"WATCHER_{dest.upper()}"
        if dest in given:
            origins[dest], layers[dest] = "flag", "flag"
        elif env_name in env:
            setattr(args, dest, options.convert(dest, env[env_name], env_name))
            origins[dest], layers[dest] = env_name, "variable"
        elif dest in file_values:
            setattr(args, dest, options.convert(dest, file_values[dest], f"{origin}: {dest}"))
            origins[dest], layers[dest] = str(path), "file"
        else:
            origins[dest], layers[dest] = "default", "default"
    for pair in EXCLUSIVE:
        _resolve(pair, args, origins, layers)
    return origins


def _resolve(
    pair: Sequence[str], args: argparse.Namespace, origins: dict[str, str], layers: dict[str, str]
) -> None:
    """Keep the member of an exclusive pair set in the highest layer; drop the other."""
    present = [dest for dest in pair if dest in layers]
    if len(present) < 2:
        return
    best = min(RANK[layers[dest]] for dest in present)
    winners = [dest for dest in present if RANK[layers[dest]] == best]
    if best == RANK["default"]:
        return
    if len(winners) > 1:
        where = " and ".join(dict.fromkeys(origins[dest] for dest in winners))
        raise ConfigError(f"{where}: give only one of {' and '.join(winners)}")
    for dest in present:
        if dest != winners[0]:
            setattr(args, dest, None)
            origins[dest] = f"overridden by {origins[winners[0]]}"
