"""Progress while a run goes on: a snapshot every few seconds, shown as a person needs it.

On a terminal, a status line at the bottom of stderr, redrawn in place, in as many words as the
terminal's width allows (a wide one, then a shorter form, then two lines; never a word cut):

    watcher 3:12 | 4,213 jobs: 1,200 waiting, 800 processing, 12 downloading, 2,100 done,
    101 failed | 9.8 req/s, cadence 3.1 s, proc 3.0 s, max gap 57 s, 3 throttled | ETA 4:10

(`proc`: how often jobs the API has PROCESSING are read; `max gap`: the longest any job went
unread.)

`Screen` is the one writer of that terminal: log lines go through it too, so each is printed
above the status line (cleared first, redrawn after), never onto it. (Our own few lines rather
than rich's Live display: no refresh thread of its own, no second renderer beside structlog's,
and no dependency for the runs from cron and Kubernetes, which never show a status line.)

Not on a terminal (cron, CI, pipes): the same figures as one `progress` log event per interval,
in the log's format (JSON lines unless asked otherwise), never a control character.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TextIO

import structlog

log = structlog.get_logger("watcher.progress")

CLEAR_LINE = "\r\x1b[K"  # to column 0, erase to the end of the line
UP = "\x1b[A"  # the cursor one line up
MIN_WIDTH = 20  # below this a status line says nothing useful; shown cut at a word


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
    # mean seconds between two readings of a job that was PROCESSING (recent), None before any
    processing_cadence_s: float | None = None
    # the longest any job has gone unread so far (open gaps of pending jobs included)
    max_gap_s: float | None = None


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass(frozen=True, slots=True)
class _Field:
    """One figure of the status line, in its long and its short form."""

    long: str
    short: str


def _groups(s: Snapshot) -> tuple[list[_Field], list[_Field]]:
    """The figures of `s` in two groups: the jobs (line one), then the service and the time."""
    cadence = "-" if s.cadence_s is None else f"{s.cadence_s:.1f} s"
    eta = "?" if s.eta_s is None else _clock(s.eta_s)
    jobs = [
        _Field(f"watcher {_clock(s.elapsed_s)} |", f"{_clock(s.elapsed_s)} |"),
        _Field(
            f"{s.admitted:,}{'' if s.input_done else '+'} jobs:",
            f"{s.admitted:,}{'' if s.input_done else '+'} jobs:",
        ),
        _Field(f"{s.waiting + s.unseen:,} waiting,", f"{s.waiting + s.unseen:,} wait"),
        _Field(f"{s.processing:,} processing,", f"{s.processing:,} proc"),
        _Field(f"{s.downloading:,} downloading,", f"{s.downloading:,} dl"),
        _Field(f"{s.done:,} done,", f"{s.done:,} done"),
        _Field(f"{s.failed:,} failed", f"{s.failed:,} failed"),
    ]
    service: list[_Field] = []
    if s.outage:
        service.append(_Field(f"{s.outage} |", f"{s.outage} |"))
    if s.pause_s is not None and s.pause_s > 0:
        service.append(_Field(f"paused {s.pause_s:.0f} s |", f"paused {s.pause_s:.0f}s |"))
    service += [
        _Field(f"{s.requests_per_s:.1f} req/s,", f"{s.requests_per_s:.1f} req/s"),
        _Field(f"cadence {cadence},", f"cad {cadence.replace(' ', '')}"),
    ]
    if s.processing_cadence_s is not None:
        service.append(
            _Field(f"proc {s.processing_cadence_s:.1f} s,", f"proc {s.processing_cadence_s:.1f}s")
        )
    if s.max_gap_s is not None:
        service.append(_Field(f"max gap {s.max_gap_s:.0f} s,", f"gap {s.max_gap_s:.0f}s"))
    service += [
        _Field(f"{s.throttled:,} throttled |", f"{s.throttled:,} thr |"),
        _Field(f"ETA {eta}", f"ETA {eta}"),
    ]
    return jobs, service


def _join(fields: Sequence[_Field], short: bool) -> str:
    return " ".join(f.short if short else f.long for f in fields)


def _cut(text: str, width: int) -> str:
    """`text` within `width`, cut only between words (with `...` where words were left out)."""
    if len(text) <= width:
        return text
    kept = ""
    for word in text.split(" "):
        candidate = f"{kept} {word}" if kept else word
        if len(candidate) + len(" ...") > width:
            break
        kept = candidate
    return f"{kept} ..." if kept else "..."


def lines(s: Snapshot, width: int = 10_000) -> list[str]:
    """The status of `s` as one or two lines, none longer than `width`, no word cut.

    One long line when it fits, else the short forms on one line, else two lines (jobs, then
    service and ETA), each long if it fits, else short; only below about 40 columns are the
    last words of a line left out (marked `...`).
    """
    jobs, service = _groups(s)
    # An outage or a pause is news: it gets a line of its own rather than share one.
    alone = not (s.outage or (s.pause_s is not None and s.pause_s > 0))
    for short in (False, True):
        one = f"{_join(jobs, short)} | {_join(service, short)}"
        if alone and len(one) <= width:
            return [one]
    out = []
    for group in (jobs, service):
        text = _join(group, False)
        if len(text) > width:
            text = _join(group, True)
        out.append(_cut(text, width))
    return out


def line(s: Snapshot) -> str:
    """The whole status of a snapshot on one line (plain text), whatever its length."""
    return " ".join(lines(s))


def _terminal_width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 80


class Screen:
    """The one writer of a terminal stream: log lines scroll above a status line kept last.

    `write_log` clears the status, writes the log text and redraws the status below it;
    `show_status` replaces the status; `close` clears it for good, leaving the cursor at the
    start of a clean line. Safe to call from several threads. Every status line is kept one
    column short of the width, so the terminal never wraps it and it can be erased exactly.
    """

    __slots__ = ("_drawn", "_lock", "_status", "_stream", "_width")

    def __init__(self, stream: TextIO, width: Callable[[], int] | None = None) -> None:
        self._stream = stream
        self._width = width or (lambda: _terminal_width(stream))
        self._lock = threading.Lock()
        self._status: Snapshot | None = None
        self._drawn = 0  # status lines on screen now

    def _erase(self) -> str:
        if not self._drawn:
            return ""
        return CLEAR_LINE + (UP + CLEAR_LINE) * (self._drawn - 1)

    def _draw(self) -> str:
        if self._status is None:
            self._drawn = 0
            return ""
        width = max(MIN_WIDTH, self._width() - 1)
        shown = lines(self._status, width)
        self._drawn = len(shown)
        return "\n".join(shown)

    def _emit(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()

    def write_log(self, text: str) -> None:
        """Print `text` (one or more whole lines) above the status line."""
        with self._lock:
            self._emit(self._erase() + text.rstrip("\n") + "\n" + self._draw())

    def show_status(self, snapshot: Snapshot) -> None:
        """Draw `snapshot` as the status, in place of the last one."""
        with self._lock:
            self._status = snapshot
            self._emit(self._erase() + self._draw())

    def close(self) -> None:
        """Erase the status for good: what follows starts on a clean line."""
        with self._lock:
            self._status = None
            if self._drawn:
                self._emit(self._erase())
            self._drawn = 0


class TerminalProgress:
    """The `on_progress` hook of a run on a terminal: each snapshot redrawn on `screen`."""

    __slots__ = ("screen",)

    def __init__(self, screen: Screen) -> None:
        self.screen = screen

    def __call__(self, snapshot: Snapshot) -> None:
        self.screen.show_status(snapshot)

    def close(self) -> None:
        """Clear the status line, so what follows starts on a clean line."""
        self.screen.close()


def on_terminal(stream: TextIO = sys.stderr) -> bool:
    """Whether `stream` is a terminal that understands cursor movement (not TERM=dumb)."""
    return stream.isatty() and os.environ.get("TERM", "") != "dumb"


def log_progress(snapshot: Snapshot) -> None:
    """One `progress` log event with every figure of the snapshot."""
    figures = asdict(snapshot)
    figures["elapsed_s"] = round(snapshot.elapsed_s, 1)
    figures["requests_per_s"] = round(snapshot.requests_per_s, 2)
    if snapshot.cadence_s is not None:
        figures["cadence_s"] = round(snapshot.cadence_s, 2)
    if snapshot.eta_s is not None:
        figures["eta_s"] = round(snapshot.eta_s)
    if snapshot.pause_s is not None:
        figures["pause_s"] = round(snapshot.pause_s, 1)
    if snapshot.processing_cadence_s is not None:
        figures["processing_cadence_s"] = round(snapshot.processing_cadence_s, 2)
    if snapshot.max_gap_s is not None:
        figures["max_gap_s"] = round(snapshot.max_gap_s, 1)
    log.info("progress", **figures)
