"""Command-line flags shared by several subcommands, and their translation into config objects.

`add_api_arguments` + `api_config` serve every command that talks to the API (`run`, `submit`):
where the API is, which project, which credentials. ConfigError names the flag at fault.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from watcher.config import REGIONS, ApiConfig
from watcher.credentials import discover
from watcher.errors import ConfigError

PROJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: `kind(text)`, refused unless greater than 0."""

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


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    """--endpoint/--region, --project-id, --auth-token-file, --request-timeout."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--endpoint", help="API base URL, e.g. http://127.0.0.1:8080")
    where.add_argument("--region", default="cn-north-4", help=f"one of {', '.join(REGIONS)}")
    parser.add_argument(
        "--project-id", help="else HUAWEICLOUD_SDK_PROJECT_ID or the credentials file"
    )
    parser.add_argument("--auth-token-file", type=Path, help="file holding an IAM token")
    parser.add_argument(
        "--request-timeout", type=positive(float), default=30.0, help="per API request (30)"
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
