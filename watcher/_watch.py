"""The library class: `Watcher`, the engine (`engine.py`) as an `async with` block that yields
each job's result as its manifest line is written.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import suppress
from dataclasses import replace
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from watcher import _logs as logs
from watcher._config import RunConfig
from watcher._engine import Hooks, Summary, watch
from watcher._errors import InputError, leaves, unwrap
from watcher._inputs import Job, check_job_id
from watcher._manifest import JobResult, Tally
from watcher._pending import PollStats
from watcher._resume import ResumeStats

_NO_HOOKS = Hooks()  # frozen: a safe default


async def _as_items(
    jobs: Iterable[str | Job] | AsyncIterable[str | Job],
) -> AsyncIterator[Job | InputError]:
    """Job ids or Jobs from a caller, as the engine's input; bad ids become InputErrors."""

    async def each() -> AsyncIterator[str | Job]:
        if isinstance(jobs, AsyncIterable):
            async for job in jobs:
                yield job
        else:
            for job in jobs:
                yield job

    number = 0
    async for job in each():
        number += 1
        if isinstance(job, Job):
            yield job
            continue
        try:
            yield Job(check_job_id(job), {}, "<watch>", number)
        except ValueError as exc:
            yield InputError("<watch>", number, str(exc))


class Watcher:
    """The engine the CLI uses, as a library.

        async with Watcher(config) as w:
            async for result in w.watch(job_ids):
                print(result.job_id, result.status)
        print(w.summary.tally.statuses)

    Results come as their manifest lines are written (the manifest, resume, retries and
    downloads work as in `watcher run`). Leaving the block before the last result stops the
    run, as SIGINT does: nothing more is polled, downloads under way get `config.grace` seconds
    to finish, jobs not final stay unwritten for the next run. An exception in the block stops
    it at once. Errors such as AuthError are raised from the block as themselves; an unexpected
    one raised beside them comes as the exception group, so it is never hidden. `summary` is
    there however the block ends (see its docstring).
    """

    def __init__(self, config: RunConfig, hooks: Hooks = _NO_HOOKS) -> None:
        logs.default_to_stderr()
        self._config = config
        self._hooks = hooks
        self._tg: TaskGroup | None = None
        self._stop = anyio.Event()
        self._written = Tally()  # every result on disk, also those after the caller left
        self._summary: Summary | None = None
        self._delivering: anyio.CancelScope | None = None

    @property
    def summary(self) -> Summary:
        """The run's counts: what the run returned once it ended by itself or after leaving the
        block early; else (cut off, or not over yet) the results written so far, with poll and
        resume counts of zero."""
        if self._summary is not None:
            return self._summary
        return Summary(self._written, PollStats(), ResumeStats())

    async def __aenter__(self) -> Watcher:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._stop.set()  # a run the caller left early stops, as on SIGINT
        if self._delivering is not None:
            self._delivering.cancel()  # nobody reads the result it was handing over
        if exc_type is None:
            self._tg.cancel_scope.deadline = anyio.current_time() + self._config.grace
        else:
            self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            if exc is not None and list(leaves(group)) == [exc]:
                return False  # the block's own exception, as it was raised
            raise unwrap(group) from None

    async def watch(
        self, jobs: Iterable[str | Job] | AsyncIterable[str | Job]
    ) -> AsyncIterator[JobResult]:
        """Watch `jobs` (ids or Jobs) and yield each one's result when it is final."""
        if self._tg is None:
            raise RuntimeError("use Watcher inside `async with`")
        send, receive = anyio.create_memory_object_stream[JobResult](64)

        async def deliver(result: JobResult) -> None:
            self._written.add(result)
            if self._stop.is_set():
                return
            # A closed iterator: the caller is gone, and the result is on disk all the same.
            closed = (anyio.BrokenResourceError, anyio.ClosedResourceError)
            with anyio.CancelScope() as scope, suppress(*closed):
                self._delivering = scope
                await send.send(result)
            self._delivering = None

        async def run() -> None:
            async with send:
                hooks = replace(self._hooks, on_result=deliver)
                self._summary = await watch(self._config, _as_items(jobs), self._stop, hooks)

        self._tg.start_soon(run)
        async with receive:
            async for result in receive:
                yield result
