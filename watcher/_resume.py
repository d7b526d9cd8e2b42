"""Picking up where an earlier run stopped: which input jobs the ledger already settles.

Running the same command again with the same manifest watches only what is not settled. By the
ledger's counting line for each input job (`ledger.py`):
- SUCCEED is settled when its files are intact (size and mtime; else, and always with `verify`,
  size and sha256), else the job is watched again;
- FAILED (the API's answer) is settled, unless `retry_failed`;
- ERROR and TIMEOUT are the watcher's own verdicts, not the API's: always watched again;
- an INVALID line is not reported again for the same source and line number.
A job watched again gets a new line, which then counts. Leftover `.part` files of a killed run
are removed before anything starts (under the batch lock, so never another run's).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio.lowlevel
import anyio.to_thread
import structlog

from watcher._download import PART_SUFFIX
from watcher._errors import InputError, LedgerError
from watcher._inputs import JOB_ID, Job
from watcher._ledger import Ledger, done, unchanged
from watcher._manifest import JobResult, os_reason

log = structlog.get_logger("watcher.resume")
CHECKPOINT_EVERY = 256  # cheap checks between two yields to the event loop


@dataclass(slots=True)
class ResumeStats:
    """What resuming did: how many jobs it skipped as settled (and their counting statuses in
    `kept`) and how many it let through to be watched again."""

    skipped: int = 0
    rewatched: int = 0
    kept: Counter[str] = field(default_factory=Counter)

    def skip(self, status: str) -> None:
        """Count one settled job."""
        self.skipped += 1
        self.kept[status] += 1


ObjectCheck = Callable[[JobResult], Awaitable[bool]]


async def _settled(
    result: JobResult, retry_failed: bool, verify: bool, objects: ObjectCheck | None
) -> bool:
    if result.status == "SUCCEED" and objects is not None:
        return bool(result.files) and await objects(result)  # files in a bucket
    if result.status == "SUCCEED":
        if not verify and result.files and all(map(unchanged, result.files.values())):
            return True  # a stat per file: cheaper than a thread hand-off
        return await anyio.to_thread.run_sync(lambda: done(result, verify=verify))
    if result.status == "FAILED":
        return not retry_failed
    return result.status == "INVALID"


async def unsettled(
    inputs: AsyncIterator[Job | InputError],
    ledger: Ledger,
    *,
    retry_failed: bool,
    stats: ResumeStats,
    verify: bool = False,
    objects: ObjectCheck | None = None,
) -> AsyncIterator[Job | InputError]:
    """The items of `inputs` that `ledger` has not settled (see the module docstring);
    `objects` checks a SUCCEED job's files when they live in a bucket (`bucket.py`)."""
    checked = 0
    async for item in inputs:
        if isinstance(item, InputError):
            if ledger.reported(item.source, item.line):
                stats.skip("INVALID")
            else:
                yield item
            continue
        result = ledger.job(item.job_id)
        if result is None:
            yield item
            continue
        checked += 1
        if checked % CHECKPOINT_EVERY == 0:
            await anyio.lowlevel.checkpoint()
        if await _settled(result, retry_failed, verify, objects):
            stats.skip(result.status)
            continue
        stats.rewatched += 1
        log.debug("watching again", job_id=item.job_id, previous=result.status)
        yield item


def remove_partials(out_dir: Path) -> int:
    """Delete `<job_id>...part` files a killed run left in `out_dir`; return how many.

    LedgerError when one cannot be deleted (the folder is read-only, say)."""
    removed = 0
    for part in out_dir.glob(f"*{PART_SUFFIX}"):
        job_id = part.name.split(".", 1)[0]
        if JOB_ID.fullmatch(job_id) and part.is_file():
            try:
                part.unlink(missing_ok=True)
            except OSError as exc:
                raise LedgerError(
                    f"--out {out_dir}: cannot remove the leftover {part.name}: {os_reason(exc)}"
                ) from exc
            removed += 1
    return removed
