"""The gaps between readings of a job: the cadence achieved for PROCESSING jobs, the longest gap.

A local fake clock (a plain number): time is the subject, and `observe` never sleeps.
"""

from __future__ import annotations

from typing import Any, cast

import anyio
import pytest
from helpers import FAST

from watcher._download import Finished
from watcher._gate import ApiCounts, ApiGate
from watcher._inputs import Job
from watcher._manifest import JobResult
from watcher._parse import JobStatus
from watcher._pending import Pending
from watcher._poller import Poller
from watcher._schedule import Watched


class FakeGate:
    """Just what a Poller reads of its gate when it only observes."""

    counts = ApiCounts()


@pytest.mark.anyio
async def test_processing_gaps_and_the_longest_gap_are_counted() -> None:
    """Readings at 0, 3 and 7 s (PROCESSING, PROCESSING, WAITING) and one at 0 and 20 s
    (WAITING): PROCESSING cadence 3.5 s, longest gap 20 s; an open gap counts once longer."""
    now = [0.0]
    downloads, downloaded = anyio.create_memory_object_stream[Finished](10)
    results, written = anyio.create_memory_object_stream[JobResult](10)
    with downloads, downloaded, results, written:
        await _observe(
            Poller(
                cast(ApiGate, cast(Any, FakeGate())),
                FAST,
                pending := Pending(),
                downloads,
                results,
                clock=lambda: now[0],
            ),
            pending,
            now,
        )


async def _observe(poller: Poller, pending: Pending, now: list[float]) -> None:
    busy, idle = Watched(Job("busy", {}), admitted=0.0), Watched(Job("idle", {}), admitted=0.0)
    pending.add(busy)
    pending.add(idle)
    for at, state in ((0.0, "PROCESSING"), (3.0, "PROCESSING"), (7.0, "WAITING")):
        await poller.observe(busy, JobStatus(state), at, listed=True)
    await poller.observe(idle, JobStatus("WAITING"), 0.0, listed=True)
    await poller.observe(idle, JobStatus("WAITING"), 20.0, listed=True)
    assert poller.stats.processing_cadence == pytest.approx(3.5)  # 3 s, then 4 s
    assert poller.stats.max_gap == pytest.approx(20.0)
    now[0] = 30.0
    assert pending.longest_unread(now[0]) == pytest.approx(23.0)  # busy: unread since 7 s
