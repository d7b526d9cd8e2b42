"""Picking up where an earlier run stopped: which input jobs are already settled.

Running the same command again with the same manifest watches only what is not done:
- a job whose last line is SUCCEED is skipped when every file it lists is present and matches its
  sha256 (otherwise it is watched again and gets a new line);
- a FAILED / ERROR / TIMEOUT job is skipped, unless `retry_failed` (then it gets a new line; the
  last line for a job id is the one that counts);
- an INVALID line is not reported again for the same source and line number.
Leftover `.part` files of a killed run are removed before anything starts.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import structlog

from watcher.download import PART_SUFFIX
from watcher.errors import InputError
from watcher.inputs import JOB_ID, Job
from watcher.manifest import Previous

log = structlog.get_logger("watcher.resume")
RETRYABLE = frozenset({"FAILED", "ERROR", "TIMEOUT"})


@dataclass(slots=True)
class ResumeStats:
    """What resuming skipped."""

    skipped: int = 0
    rewatched: int = 0


def files_intact(record: Mapping[str, Any]) -> bool:
    """Whether every file a manifest line lists is on disk with its size and sha256."""
    for saved in (record.get("files") or {}).values():
        path = Path(saved["path"])
        try:
            if path.stat().st_size != saved["bytes"]:
                return False
            digest = hashlib.sha256()
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except OSError:
            return False
        if digest.hexdigest() != saved["sha256"]:
            return False
    return True


async def _settled(record: Mapping[str, Any] | None, retry_failed: bool) -> bool:
    if record is None:
        return False
    status = record.get("status")
    if status == "SUCCEED":
        return await anyio.to_thread.run_sync(files_intact, record)
    return status in RETRYABLE and not retry_failed


async def unsettled(
    inputs: AsyncIterator[Job | InputError],
    previous: Previous,
    *,
    retry_failed: bool,
    stats: ResumeStats,
) -> AsyncIterator[Job | InputError]:
    """The items of `inputs` that `previous` has not settled (see the module docstring)."""
    async for item in inputs:
        if isinstance(item, InputError):
            if (item.source, item.line) not in previous.invalid:
                yield item
            continue
        record = previous.jobs.get(item.job_id)
        if await _settled(record, retry_failed):
            stats.skipped += 1
            continue
        if record is not None:
            stats.rewatched += 1
            log.info("watching again", job_id=item.job_id, previous=record.get("status"))
        yield item


def remove_partials(out_dir: Path) -> int:
    """Delete `<job_id>...part` files a killed run left in `out_dir`; return how many."""
    removed = 0
    for part in out_dir.glob(f"*{PART_SUFFIX}"):
        job_id = part.name.split(".", 1)[0]
        if JOB_ID.fullmatch(job_id) and part.is_file():
            part.unlink(missing_ok=True)
            removed += 1
    return removed
