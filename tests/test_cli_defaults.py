"""One source of defaults: each flag defaults to its config object's; no argparse internals."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from helpers import TEST_AK, TEST_PROJECT_ID, TEST_SK

from watcher import _commands
from watcher._auth import AkSk
from watcher._config import (
    DEFAULT_OUT,
    DEFAULT_REGION,
    ApiConfig,
    DownloadPolicy,
    LogConfig,
    PollPolicy,
    ReportConfig,
    RunConfig,
    default,
)
from watcher._metrics import MetricsConfig
from watcher._submit import SubmitPolicy
from watcher.cli import build_config, build_parsers
from watcher.sim.config import SimConfig

POLL, DOWNLOAD, LOGS, METRICS = PollPolicy(), DownloadPolicy(), LogConfig(), MetricsConfig()
SIM = SimConfig("p", AkSk("a", "b"))
SUBMIT, REPORT = SubmitPolicy(), ReportConfig()
# Not settings: what argparse or the dispatch put in every namespace.
DISPATCH = {"command", "func", "layered"}

RUN_DEFAULTS: dict[str, Any] = {
    "inputs": [],
    "config": None,
    "out": DEFAULT_OUT,
    "manifest": None,
    "endpoint": None,
    "region": DEFAULT_REGION,
    "project_id": None,
    "auth_token_file": None,
    "request_timeout": default(ApiConfig, "request_timeout"),
    "poll": POLL.strategy,
    "cadence": POLL.cadence,
    "rate": POLL.rate,
    "download_workers": DOWNLOAD.workers,
    "files": DOWNLOAD.kinds,
    "name": default(RunConfig, "name_template"),
    "shard": default(RunConfig, "shard"),
    "job_timeout": POLL.job_timeout,
    "max_retries": POLL.retry.attempts - 1,
    "retry_failed": default(RunConfig, "retry_failed"),
    "verify": default(RunConfig, "verify"),
    "max_file_bytes": DOWNLOAD.max_file_bytes,
    "speed_limit": DOWNLOAD.speed_limit,
    "speed_time": DOWNLOAD.speed_time,
    "outage_timeout": POLL.outage_timeout,
    "max_pause": POLL.max_pause,
    "max_gap": POLL.max_gap,
    "insecure": not DOWNLOAD.verify_tls,
    "grace": default(RunConfig, "grace"),
    "quiet": LOGS.quiet,
    "progress_interval": LOGS.progress_interval,
    "log_level": LOGS.level,
    "log_format": LOGS.format,
    "pushgateway": METRICS.pushgateway,
    "push_interval": METRICS.push_interval,
    "metrics_port": METRICS.port,
    "metrics_host": METRICS.host,
    "metrics_textfile": METRICS.textfile,
    "metrics_batch": None,  # the --out folder's name, else MetricsConfig's batch
}
API_DEFAULTS = {k: RUN_DEFAULTS[k] for k in ("endpoint", "region", "project_id")} | {
    "auth_token_file": None,
    "request_timeout": default(ApiConfig, "request_timeout"),
}
DEFAULTS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "run": ([], RUN_DEFAULTS),
    "config": ([], RUN_DEFAULTS),
    "submit": (
        [],
        {
            "inputs": [],
            "voice_asset_id": None,
            "audio_format": None,
            "gen_srt": None,
            "need_timestamp": None,
            "rate": SUBMIT.rate,
            "rest": None,
            "keep_text": False,
            **API_DEFAULTS,
        },
    ),
    "report": (["m.jsonl"], {"manifest": "m.jsonl", "format": REPORT.format, "html": REPORT.html}),
    "merge": (["m.jsonl"], {"manifests": ["m.jsonl"], "output": None}),
    "sim": (
        [],
        {
            "host": "127.0.0.1",
            "port": 0,
            "seed": SIM.seed,
            "time_scale": SIM.time_scale,
            "slots": SIM.slots,
            "url_ttl": SIM.url_ttl,
            "fail_percent": SIM.fail_percent,
            "rate_limit": SIM.rate_limit,
            "fault": [],
            "slow_seconds": None,  # the fault plan's DEFAULT_SLOW_SECONDS
            "preload": None,
            "storage_latency": SIM.storage_latency,
            "storage_bandwidth": SIM.storage_bandwidth,
            "random_order": SIM.random_order,
            "ak": None,
            "sk": None,
            "project_id": None,
            "token": None,
        },
    ),
}


def test_every_command_is_checked() -> None:
    """DEFAULTS covers every subcommand `watcher` has."""
    assert set(DEFAULTS) == set(build_parsers()[1]) == {c.name for c in _commands.COMMANDS}


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_every_flag_default_is_its_config_objects(name: str) -> None:
    """What `watcher NAME` gets with no flags is, flag by flag, the config objects' default;
    a flag missing from the table (a new one) fails too."""
    required, expected = DEFAULTS[name]
    parser = build_parsers()[1][name]
    got = {k: v for k, v in vars(parser.parse_args(required)).items() if k not in DISPATCH}
    assert got == expected


def test_the_library_and_the_command_line_try_as_often() -> None:
    """Polls and downloads try 6 times by default, as `--max-retries 5` says: the library's
    DownloadPolicy tried 5 times while the command line tried 6."""
    assert POLL.retry.attempts == DOWNLOAD.retry.attempts == 6


def test_a_run_with_no_flags_is_the_librarys_default_run(tmp_path: Path) -> None:
    """`watcher run` without flags builds the very RunConfig a library caller gets by default:
    the same PollPolicy and DownloadPolicy, grace, name template and the rest."""
    args = build_parsers()[0].parse_args(["run"])
    env = {
        "HUAWEICLOUD_SDK_AK": TEST_AK,
        "HUAWEICLOUD_SDK_SK": TEST_SK,
        "HUAWEICLOUD_SDK_PROJECT_ID": TEST_PROJECT_ID,
    }
    config = build_config(args, env, tmp_path)
    assert config == RunConfig(
        ApiConfig(config.api.endpoint, TEST_PROJECT_ID, config.api.credentials),
        Path(DEFAULT_OUT),
        Path(DEFAULT_OUT) / "manifest.jsonl",
    )


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_every_subcommand_dispatches_to_its_module(name: str) -> None:
    """`args.func` is the command module's own `run` (set_defaults, no table of names)."""
    required, _ = DEFAULTS[name]
    args = build_parsers()[1][name].parse_args(required)
    assert args.func is getattr(_commands, name).run


# argparse's private names: its internals change between Python versions.
PRIVATE = re.compile(
    r"\.(_actions|_option_string_actions|_action_groups|_mutually_exclusive_groups|_defaults"
    r"|_group_actions|_registries|_registry_get|_name_parser_map|_choices_actions|_subparsers"
    r"|_get_formatter|_get_positional_actions|_get_optional_actions|_parse_known_args"
    r"|_get_values|_match_argument|_get_option_tuples|_prog_prefix|_check_value|_pop_action_class"
    r"|_add_action|_remove_action|_get_args|_get_kwargs)\b"
)


def test_no_argparse_private_attribute_is_used() -> None:
    """No module of the watcher reaches into argparse's private attributes (the HelpFormatter's
    `_get_help_string`, its documented extension point, is overridden, not reached into)."""
    package = Path(_commands.__file__).parents[1]
    found = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert found == []
