"""Helpers for tests that run the whole watcher against the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from conftest import TEST_AK, TEST_PROJECT_ID, TEST_SK

from watcher.auth import AkSk
from watcher.config import ApiConfig, DownloadPolicy, PollPolicy, RunConfig
from watcher.errors import InputError
from watcher.inputs import Job
from watcher.retry import RetryPolicy
from watcher.watch import Summary, watch

QUICK_RETRY = RetryPolicy(attempts=4, base=0.01, cap=0.05)
FAST = PollPolicy(cadence=0.02, rate=2000, retry=QUICK_RETRY, auth_pause=0.01, outage_probe=0.01)
FAST_DOWNLOADS = DownloadPolicy(workers=4, retry=QUICK_RETRY)


def run_config(
    url: str,
    out: Path,
    poll: PollPolicy = FAST,
    download: DownloadPolicy = FAST_DOWNLOADS,
    *,
    retry_failed: bool = False,
    **api: Any,
) -> RunConfig:
    """A fast RunConfig against a test simulator at `url`, writing into `out`."""
    api_config = ApiConfig(url, TEST_PROJECT_ID, AkSk(TEST_AK, TEST_SK), request_timeout=5)
    return RunConfig(
        api=replace(api_config, **api),
        out_dir=out,
        manifest=out / "manifest.jsonl",
        poll=poll,
        download=download,
        retry_failed=retry_failed,
    )


def make_jobs(n: int, prefix: str = "job") -> list[Job]:
    """`n` jobs named prefix-000, prefix-001... with meta {"n": i}."""
    return [Job(f"{prefix}-{i:03d}", {"n": i}) for i in range(n)]


def read_manifest(out: Path) -> list[dict[str, Any]]:
    """The manifest lines in `out`, parsed."""
    return [orjson.loads(line) for line in (out / "manifest.jsonl").read_bytes().splitlines()]


async def _items(*items: Job | InputError) -> AsyncIterator[Job | InputError]:
    for item in items:
        yield item


async def run_jobs(config: RunConfig, *items: Job | InputError) -> Summary:
    """Watch `items` to the end with `config`."""
    return await watch(config, _items(*items))
