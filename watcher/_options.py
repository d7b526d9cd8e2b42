"""Command-line flags shared by several subcommands, and their translation into config objects.

`add_api_arguments` + `api_config` serve every command that talks to the API (`run`, `submit`):
where the API is, which project, which credentials. ConfigError names the flag at fault.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from watcher._config import DEFAULT_REGION, REGIONS, ApiConfig, default
from watcher._credentials import discover
from watcher._errors import ConfigError

PROJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def number(
    kind: Callable[[str], float],
    low: float = 0.0,
    high: float = math.inf,
    *,
    low_open: bool = True,
) -> Callable[[str], float]:
    """An argparse type: `kind(text)`, finite, above `low` (at least `low` when not `low_open`)
    and at most `high`; ArgumentTypeError says the range otherwise."""
    above = f"greater than {low:g}" if low_open else f"at least {low:g}"
    wanted = above if high == math.inf else f"{above} and at most {high:g}"

    def parse(text: str) -> float:
        try:
            value = kind(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def positive(kind: Callable[[str], float], high: float = math.inf) -> Callable[[str], float]:
    """An argparse type: `kind(text)`, finite, greater than 0 and at most `high`."""
    return number(kind, 0, high)


# Ranges that keep every setting meaningful: a day for anything timed, a port's 16 bits.
DAY = 86400.0
PORT = number(int, 0, 65535, low_open=False)


class DefaultsHelp(argparse.HelpFormatter):
    """Help that shows each option's default, unless its text already says it or it has none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or f"({default})" in text  # already says it its own way: "text table or JSON (text)"
            or default in (None, False, argparse.SUPPRESS)
            or default == []
            or not action.option_strings
        ):
            return action.help
        return f"{text} (default: %(default)s)"


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    """--endpoint/--region, --project-id, --auth-token-file, --request-timeout."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--endpoint", help="API base URL, e.g. http://127.0.0.1:8080")
    where.add_argument("--region", default=DEFAULT_REGION, help=f"one of {', '.join(REGIONS)}")
    parser.add_argument(
        "--project-id", help="else HUAWEICLOUD_SDK_PROJECT_ID or the credentials file"
    )
    parser.add_argument("--auth-token-file", type=Path, help="file holding an IAM token")
    parser.add_argument(
        "--request-timeout",
        type=positive(float, 3600),
        default=default(ApiConfig, "request_timeout"),
        help="seconds per API request",
    )


def api_config(args: argparse.Namespace, env: Mapping[str, str], home: Path | None) -> ApiConfig:
    """The API settings from the flags of `add_api_arguments` and the environment."""
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
    return ApiConfig(endpoint, project_id, found.credentials, args.request_timeout)
