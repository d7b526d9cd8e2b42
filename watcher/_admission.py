"""Admission: which input items become jobs to watch, decided in one place, in this order.

    inputs ─▶ shard ─▶ names ─▶ resume ─▶ Admission.run ─▶ Pending (watched)
                │        │         │          ├─ a bad line: its INVALID manifest line
                │        │         │          └─ an id seen before: skipped (counted)
                │        │         └─ settled by the ledger: skipped (`resume.py`, ResumeStats)
                │        └─ `--name`: each job's stem, or a bad line if it cannot be named
                └─ `--shard i/n`: the ids this shard owns; bad lines pass in every shard
                  (`watcher merge` dedupes them)

`screened` chains the first three (pure streams; the rules live in `shard.py`, `naming.py`,
`resume.py`), `Admission` takes the rest: it writes INVALID lines (through its own clone of
the results stream, closed when the input ends), dedupes, gives each job its deadline and
adds it to the pending registry, then tells the registry the input is exhausted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import structlog
from anyio.streams.memory import MemoryObjectSendStream

from watcher._config import PollPolicy, RunConfig
from watcher._errors import InputError
from watcher._inputs import Job
from watcher._ledger import Ledger
from watcher._manifest import JobResult
from watcher._naming import Namer
from watcher._pending import Pending
from watcher._resume import ObjectCheck, ResumeStats, unsettled
from watcher._schedule import Watched
from watcher._shard import Shard

log = structlog.get_logger("watcher.poller")  # its events were the poller's: same logger name


async def owned(
    items: AsyncIterator[Job | InputError], shard: Shard
) -> AsyncIterator[Job | InputError]:
    """The jobs `shard` owns; bad lines pass in every shard (`watcher merge` dedupes them)."""
    async for item in items:
        if isinstance(item, InputError) or shard.owns(item.job_id):
            yield item


def screened(
    inputs: AsyncIterator[Job | InputError],
    config: RunConfig,
    ledger: Ledger,
    resume: ResumeStats,
    objects: ObjectCheck | None = None,
) -> AsyncIterator[Job | InputError]:
    """`inputs` past the shard, the names and the resume check (the module docstring's order);
    `resume` counts what the ledger settled, `objects` checks files that live in a bucket."""
    if config.shard is not None:
        inputs = owned(inputs, config.shard)
    named = Namer(config.name_template).apply(inputs)
    return unsettled(
        named,
        ledger,
        retry_failed=config.retry_failed,
        stats=resume,
        verify=config.verify,
        objects=objects,
    )


class Admission:
    """Admits the screened input into `pending` (see the module docstring); `results` is this
    admission's own send stream, closed when `run` returns."""

    def __init__(
        self,
        pending: Pending,
        policy: PollPolicy,
        results: MemoryObjectSendStream[JobResult],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pending = pending
        self._timeout = policy.job_timeout
        self._results = results
        self._clock = clock
        self._seen: set[str] = set()

    async def run(self, inputs: AsyncIterator[Job | InputError]) -> None:
        """Admit every item of `inputs`, then mark the input exhausted."""
        async with self._results:
            async for item in inputs:
                if isinstance(item, InputError):
                    await self._invalid(item)
                    continue
                w = self.admit(item)
                if w is not None:
                    self._pending.add(w)
                    self._pending.stats.admitted += 1
        self._pending.close()

    def admit(self, job: Job) -> Watched | None:
        """The record to watch `job` by, admitted now (its deadline `job_timeout` later), or
        None for an id seen before in this run (logged and counted)."""
        if job.job_id in self._seen:
            self._pending.stats.duplicates += 1
            log.info("duplicate job id skipped", job_id=job.job_id, line=job.line)
            return None
        self._seen.add(job.job_id)
        now = self._clock()
        deadline = None if self._timeout is None else now + self._timeout
        return Watched(job, admitted=now, deadline=deadline)

    async def _invalid(self, bad: InputError) -> None:
        self._pending.stats.invalid += 1
        log.warning("bad input line", source=bad.source, line=bad.line, reason=bad.reason)
        await self._results.send(JobResult.invalid(bad))
