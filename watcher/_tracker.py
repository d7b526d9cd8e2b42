"""The progress tracker: `Snapshot`s of one run, built from its live counters.

It reads the pending registry (admitted jobs, their stages, the poll counts and gaps), the API
gate (pause, outage), the download pool and the manifest's tally, and owns the one piece of
state of its own: recent readings of the counters, so that the request rate and the cadences a
snapshot shows are over the last `WINDOW` seconds, not the whole run (which would hide a
slowdown an hour in). The clock is injectable; `engine.py` calls `snapshot` every
`progress_interval` seconds and once at the end.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from watcher._download import JobDownload
from watcher._gate import ApiGate
from watcher._manifest import Tally
from watcher._pending import Pending
from watcher._progress import Snapshot


class Tracker:
    """Builds progress snapshots from the live counters of one run."""

    WINDOW = 10.0  # seconds the request rate and cadence are averaged over

    def __init__(
        self,
        pending: Pending,
        gate: ApiGate,
        download: JobDownload,
        tally: Tally,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pending, self._gate, self._download, self._tally = pending, gate, download, tally
        self._clock = clock
        self._started = clock()
        # (time, requests, gaps, gap total, PROCESSING gaps, their total) of recent snapshots,
        # oldest first
        self._recent: deque[tuple[float, int, int, float, int, float]] = deque(
            [(self._started, 0, 0, 0.0, 0, 0.0)]
        )

    def snapshot(self, input_done: bool) -> Snapshot:
        """The run as it is now; rates and cadences over the last WINDOW seconds."""
        stats, now = self._pending.stats, self._clock()
        requests = stats.requests + stats.list_requests
        while len(self._recent) > 1 and now - self._recent[1][0] >= self.WINDOW:
            self._recent.popleft()
        then, then_requests, then_gaps, then_gap_total, then_pgaps, then_ptotal = self._recent[0]
        self._recent.append(
            (
                now,
                requests,
                stats.gaps,
                stats.gap_total,
                stats.processing_gaps,
                stats.processing_gap_total,
            )
        )
        pgaps = stats.processing_gaps - then_pgaps
        ptotal = stats.processing_gap_total - then_ptotal
        rate = (requests - then_requests) / max(now - then, 1e-9)
        gaps, gap_total = stats.gaps - then_gaps, stats.gap_total - then_gap_total
        waiting, processing, unseen = self._pending.stages()
        done = self._tally.statuses["SUCCEED"]
        finished = sum(self._tally.statuses.values())
        remaining = stats.admitted - finished
        elapsed = now - self._started
        eta = remaining / (finished / elapsed) if input_done and finished and elapsed else None
        return Snapshot(
            elapsed_s=elapsed,
            admitted=stats.admitted,
            waiting=waiting,
            processing=processing,
            unseen=unseen,
            downloading=max(0, stats.handed_off - self._download.finished),
            done=done,
            failed=finished - done,
            requests_per_s=rate,
            cadence_s=gap_total / gaps if gaps else stats.effective_cadence,
            throttled=stats.throttled,
            input_done=input_done,
            eta_s=eta,
            outage=self._gate.outage.describe() or self._download.storage.describe(),
            pause_s=self._gate.pause_left(),
            processing_cadence_s=ptotal / pgaps if pgaps else stats.processing_cadence,
            max_gap_s=self._pending.longest_unread(now),
        )
