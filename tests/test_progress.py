"""The status line: fits any width without cutting a word, and log lines scroll above it."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import replace
from typing import Any, cast

import pyte
import pytest
from helpers import FakeClock

from watcher._outage import Outage
from watcher._pending import PollStats
from watcher._progress import (
    Screen,
    Snapshot,
    TerminalProgress,
    _groups,
    line,
    lines,
    on_terminal,
)
from watcher._tracker import Tracker

BUSY = Snapshot(
    elapsed_s=3 * 3600 + 192,
    admitted=70_000,
    waiting=41_200,
    processing=8_000,
    unseen=12,
    downloading=12,
    done=20_100,
    failed=1_101,
    requests_per_s=9.8,
    cadence_s=3.1,
    throttled=37,
    input_done=True,
    eta_s=4 * 3600 + 250,
)
SMALL = replace(BUSY, admitted=20, waiting=4, processing=4, unseen=0, done=9, failed=2, eta_s=None)
TROUBLE = replace(BUSY, outage="API unreachable since 02:13:05 UTC, next try in 8 s", pause_s=12)


def _words(s: Snapshot) -> set[str]:
    """Every word the status of `s` may show, in either form, and the mark of words left out."""
    words = {"..."}
    for group in _groups(s):
        for field in group:
            words.update(field.long.split() + field.short.split())
    return words


@pytest.mark.parametrize("snapshot", [BUSY, SMALL, TROUBLE])
@pytest.mark.parametrize("width", [19, 30, 40, 60, 79, 100, 119, 135, 200])
def test_the_status_fits_the_width_in_whole_words(snapshot: Snapshot, width: int) -> None:
    """At every width: at most two lines, none longer than the width, every word whole."""
    shown = lines(snapshot, width)
    assert 1 <= len(shown) <= 2
    assert all(len(text) <= max(width, 20) for text in shown), shown
    allowed = _words(snapshot)
    assert {w for text in shown for w in text.split()} <= allowed, shown


@pytest.mark.parametrize("snapshot", [BUSY, SMALL])
def test_every_figure_is_readable_at_80_columns(snapshot: Snapshot) -> None:
    """At 79 usable columns the rate, cadence, throttled count and ETA are all shown."""
    text = " ".join(lines(snapshot, 79))
    for figure in ("req/s", "throttled", "ETA", "done", "failed", "wait"):
        assert figure in text, text
    assert f"{snapshot.throttled:,} throttled" in text


def test_a_wide_terminal_gets_one_long_line() -> None:
    """With room enough, the whole status is one line in its long form."""
    assert lines(BUSY, 200) == [line(BUSY)]
    assert "41,212 waiting, 8,000 processing" in line(BUSY)


def test_outage_and_pause_are_shown_when_set_and_only_then() -> None:
    """An outage and a pause appear (on a line of their own), and not when they are None."""
    trouble = lines(TROUBLE, 200)
    assert len(trouble) == 2 and trouble[1].startswith("API unreachable since 02:13:05 UTC")
    assert "paused 12 s" in trouble[1]
    assert "unreachable" in " ".join(lines(TROUBLE, 79))
    assert "unreachable" not in line(BUSY) and "paused" not in line(BUSY)


def _terminal(columns: int = 80, rows: int = 24) -> tuple[pyte.Screen, pyte.Stream, io.StringIO]:
    screen = pyte.Screen(columns, rows)
    return screen, pyte.Stream(screen), io.StringIO()


def _feed(stream: pyte.Stream, out: io.StringIO) -> None:
    # A terminal turns \n into a new line at column 0 (the tty's onlcr does it for real).
    stream.feed(out.getvalue().replace("\n", "\r\n"))
    out.seek(0)
    out.truncate()


def _rows(screen: pyte.Screen) -> list[str]:
    return [row.rstrip() for row in screen.display]


def test_log_lines_scroll_above_the_status_and_never_onto_it() -> None:
    """Each log line lands on its own row above the status, which is redrawn below it."""
    screen, stream, out = _terminal()
    display = Screen(out, width=lambda: 80)
    progress = TerminalProgress(display)
    progress(BUSY)
    for i in range(30):  # more than the screen holds: it scrolls
        display.write_log(f"2026-12-01T08:15:27Z [warning] throttled n={i}")
        if i % 3 == 0:
            progress(replace(BUSY, done=BUSY.done + i))
        _feed(stream, out)
        rows = [r for r in _rows(screen) if r]
        status = lines(replace(BUSY, done=BUSY.done + i - i % 3), 79)
        assert rows[-len(status) :] == status
        assert rows[-len(status) - 1] == f"2026-12-01T08:15:27Z [warning] throttled n={i}"
        assert not any("[warning]" in r and "jobs:" in r for r in rows)


def test_close_leaves_a_clean_line_where_the_status_was() -> None:
    """After close the status rows are blank and the cursor is at column 0 of the first."""
    screen, stream, out = _terminal()
    display = Screen(out, width=lambda: 80)
    display.write_log("first log line")
    display.show_status(BUSY)
    display.show_status(TROUBLE)
    display.close()
    display.close()  # twice is harmless
    _feed(stream, out)
    assert [r for r in _rows(screen) if r] == ["first log line"]
    assert (screen.cursor.x, screen.cursor.y) == (0, 1)


def test_a_narrower_terminal_is_followed_at_each_redraw() -> None:
    """The width is asked at each redraw, so a resized terminal gets lines that fit it."""
    widths = iter([200, 60])
    out = io.StringIO()
    display = Screen(out, width=lambda: next(widths))
    display.show_status(BUSY)
    display.show_status(BUSY)
    second = out.getvalue().rsplit("\x1b[K", 1)[-1]
    assert all(len(text) <= 59 for text in second.split("\n"))


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_a_status_line_needs_a_terminal_that_moves_its_cursor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No status line off a terminal, nor on TERM=dumb (which cannot erase a line)."""
    monkeypatch.setenv("TERM", "xterm")
    assert on_terminal(_Stream(tty=True)) and not on_terminal(_Stream(tty=False))
    monkeypatch.setenv("TERM", "dumb")
    assert not on_terminal(_Stream(tty=True))


class _Live:
    """The live counters `Tracker` reads, set by hand: a poller's, a gate's, downloads', a
    tally's."""

    def __init__(self) -> None:
        self.stats = PollStats()
        self.outage = Outage("the API")
        self.storage = Outage("storage")
        self.finished = 0
        self.statuses: Counter[str] = Counter()

    def stages(self) -> tuple[int, int, int]:
        return 0, 0, 0

    def pause_left(self) -> float | None:
        return None

    def longest_unread(self, now: float) -> float | None:
        return None

    def tracker(self, clock: FakeClock) -> Tracker:
        """A tracker over these counters, on `clock`."""
        me = cast(Any, self)
        return Tracker(me, me, me, me, clock=clock)

    def read(self, requests: int, gaps: int, gap_total: float) -> None:
        """Set the counters to `requests` requests so far and `gaps` gaps summing `gap_total`."""
        self.stats.api.show = requests
        self.stats.gaps, self.stats.gap_total = gaps, gap_total


def test_the_request_rate_and_cadence_are_over_the_last_ten_seconds() -> None:
    """100 requests (gaps of 2 s) in the first 10 s, then 10 (gaps of 5 s) in the next 10: at
    20 s the line says 1.0 requests/s and a 5 s cadence, not the run's averages (5.5/s, 2.3 s)."""
    clock, live = FakeClock(0.0), _Live()
    tracker = live.tracker(clock)
    for t, requests, gaps, total in [(5, 50, 20, 40.0), (10, 100, 40, 80.0), (15, 105, 41, 85.0)]:
        clock.now = t
        live.read(requests, gaps, total)
        tracker.snapshot(input_done=False)
    clock.now = 20.0
    live.read(110, 42, 90.0)
    snapshot = tracker.snapshot(input_done=False)
    assert snapshot.requests_per_s == pytest.approx(1.0)
    assert snapshot.cadence_s == pytest.approx(5.0)
    assert snapshot.elapsed_s == 20.0


def test_the_rates_of_the_first_seconds_are_over_the_time_so_far() -> None:
    """Before ten seconds have passed the window is the run so far: 30 requests in 3 s is 10/s;
    with no gap yet measured the cadence is unknown (None)."""
    clock, live = FakeClock(0.0), _Live()
    tracker = live.tracker(clock)
    clock.now = 3.0
    live.read(30, 0, 0.0)
    snapshot = tracker.snapshot(input_done=False)
    assert snapshot.requests_per_s == pytest.approx(10.0)
    assert snapshot.cadence_s is None


def test_processing_cadence_and_max_gap_are_shown_when_known_and_fit_80_columns() -> None:
    """`proc` and `max gap` appear when set (still within 79 columns, throttling and ETA too)
    and not when they are None."""
    gaps = replace(BUSY, processing_cadence_s=3.04, max_gap_s=57.2)
    assert "proc 3.0 s, max gap 57 s," in line(gaps)
    shown = lines(gaps, 79)
    assert all(len(text) <= 79 for text in shown)
    assert "max gap 57 s" in " ".join(shown) and f"{BUSY.throttled:,} throttled" in " ".join(shown)
    assert "gap" not in line(BUSY) and "proc " not in line(BUSY)
