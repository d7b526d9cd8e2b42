"""Progress while a run goes on: a snapshot every few seconds, shown as a person needs it.

On a terminal, one status line on stderr, redrawn in place:

    watcher 3:12 | 4,213 jobs: 1,200 waiting, 800 processing, 12 downloading, 2,100 done,
    101 failed | 9.8 req/s, cadence 3.1 s, 3 throttled | ETA 4:10

Not on a terminal (cron, CI, pipes): the same figures as one `progress` log event per interval,
in the log's format (JSON lines unless asked otherwise), never a control character.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import asdict, dataclass
from typing import TextIO

import structlog

log = structlog.get_logger("watcher.progress")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state of a run at one moment. Rates are over the interval since the last snapshot."""

    elapsed_s: float
    admitted: int
    waiting: int
    processing: int
    unseen: int
    downloading: int
    done: int
    failed: int
    requests_per_s: float
    cadence_s: float | None
    throttled: int
    input_done: bool
    eta_s: float | None
    # e.g. "API unreachable since 02:13:05 UTC, next try in 8 s"; None while all is well
    outage: str | None = None
    # seconds left of a pause everyone is in (a 429's Retry-After, capped), None when none
    pause_s: float | None = None


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def line(s: Snapshot) -> str:
    """The one-line summary of a snapshot (plain text)."""
    jobs = f"{s.admitted:,}{'' if s.input_done else '+'} jobs"
    stages = (
        f"{s.waiting + s.unseen:,} waiting, {s.processing:,} processing, "
        f"{s.downloading:,} downloading, {s.done:,} done, {s.failed:,} failed"
    )
    cadence = "-" if s.cadence_s is None else f"{s.cadence_s:.1f} s"
    rate = f"{s.requests_per_s:.1f} req/s, cadence {cadence}, {s.throttled:,} throttled"
    eta = "ETA ?" if s.eta_s is None else f"ETA {_clock(s.eta_s)}"
    return f"watcher {_clock(s.elapsed_s)} | {jobs}: {stages} | {rate} | {eta}"


class TerminalProgress:
    """Redraws one status line on a terminal stream."""

    __slots__ = ("_shown", "_stream")

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._shown = False

    def __call__(self, snapshot: Snapshot) -> None:
        width = shutil.get_terminal_size((120, 20)).columns - 1
        self._stream.write("\r\x1b[K" + line(snapshot)[:width])
        self._stream.flush()
        self._shown = True

    def close(self) -> None:
        """Clear the status line, so what follows starts on a clean line."""
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


def log_progress(snapshot: Snapshot) -> None:
    """One `progress` log event with every figure of the snapshot."""
    figures = asdict(snapshot)
    figures["elapsed_s"] = round(snapshot.elapsed_s, 1)
    figures["requests_per_s"] = round(snapshot.requests_per_s, 2)
    if snapshot.cadence_s is not None:
        figures["cadence_s"] = round(snapshot.cadence_s, 2)
    if snapshot.eta_s is not None:
        figures["eta_s"] = round(snapshot.eta_s)
    log.info("progress", **figures)
