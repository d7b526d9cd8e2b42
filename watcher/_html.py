"""`watcher report MANIFEST --html FILE`: the night at a glance, as one self-contained page.

The page needs nothing but itself: inline CSS and SVG, no script, no font, no network. It shows
the jobs finished over time by status, how long jobs took from their first reading to their
final state (and from the final state to their files being saved, where the manifest has
`saved_at`), the stretches in which no job finished (an outage or throttling shows as one; the
manifest records neither directly), the jobs that ended unreachable, and the failure groups. Every
figure drawn is also in a JSON block (`<script type="application/json" id="figures">`), so a
test or a script can check the page against its manifest.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import orjson

from watcher._report import Percentiles, Report, printable, read_ledger

# Colour per status (colour-blind-safe: Okabe-Ito), and their order in a stack.
COLOURS = {
    "SUCCEED": "#009E73",
    "FAILED": "#D55E00",
    "ERROR": "#E69F00",
    "TIMEOUT": "#CC79A7",
    "INVALID": "#999999",
}
OTHER_COLOUR = "#56B4E9"
# Bucket widths a timeline may use, in seconds: the smallest giving at most MAX_BUCKETS.
STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
MAX_BUCKETS = 72
HISTOGRAM_BINS = 30
# A stretch with no job finishing is shown when it lasts over a minute and 10 times the median.
STALL_MIN_S = 60.0
STALL_FACTOR = 10.0
MAX_STALLS = 10


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return max(0.0, (later - earlier).total_seconds())


@dataclass(frozen=True, slots=True)
class Timeline:
    """Jobs finished per time bucket, by status: `counts[status][i]` ended in bucket i, which
    starts `start + i * step_s` (UTC)."""

    start: datetime
    step_s: int
    counts: Mapping[str, tuple[int, ...]]

    @classmethod
    def of(cls, finished: Sequence[tuple[datetime, str]]) -> Timeline | None:
        """The timeline of (finished_at, status) pairs; None when there are none."""
        if not finished:
            return None
        first = min(t for t, _ in finished)
        span = max((t - first).total_seconds() for t, _ in finished)
        # past the largest step (a clock gone wrong in some record), as many as fit
        step = next((s for s in STEPS if span / s < MAX_BUCKETS), math.ceil(span / MAX_BUCKETS))
        start = datetime.fromtimestamp(math.floor(first.timestamp() / step) * step, UTC)
        buckets = int((span + (first - start).total_seconds()) // step) + 1
        counts: dict[str, list[int]] = {}
        for moment, status in finished:
            row = counts.setdefault(status, [0] * buckets)
            row[min(buckets - 1, int((moment - start).total_seconds() // step))] += 1
        ordered = sorted(counts, key=_status_order)
        return cls(start, step, {s: tuple(counts[s]) for s in ordered})

    @property
    def buckets(self) -> int:
        """How many buckets the timeline has."""
        return len(next(iter(self.counts.values())))


def _status_order(status: str) -> tuple[int, str]:
    order = list(COLOURS)
    return (order.index(status) if status in order else len(order), status)


@dataclass(frozen=True, slots=True)
class Night:
    """What the page shows, computed from a manifest's winning records and its Report."""

    report: Report
    timeline: Timeline | None
    detection_s: tuple[float, ...]  # first reading -> final state, per job
    download_s: tuple[float, ...]  # final state -> files saved, per job with `saved_at`
    # (start, seconds) of the longest stretches with no job finishing, longest first
    stalls: tuple[tuple[datetime, float], ...]
    unreachable: int  # jobs that ended ERROR TRANSPORT: the API did not answer them

    @classmethod
    def of(cls, report: Report, winners: Iterable[Mapping[str, Any]]) -> Night:
        """The night of `winners` (each job's last record), summed up in `report`."""
        finished: list[tuple[datetime, str]] = []
        detection: list[float] = []
        download: list[float] = []
        unreachable = 0
        for record in winners:
            status = str(record["status"])
            done = _time(record.get("finished_at"))
            if done is not None:
                finished.append((done, status))
            if status != "INVALID":
                elapsed = record.get("elapsed_s")
                if isinstance(elapsed, int | float) and not isinstance(elapsed, bool):
                    detection.append(float(elapsed))
                elif (seconds := _seconds(done, _time(record.get("first_poll_at")))) is not None:
                    detection.append(seconds)
            if (saved := _seconds(_time(record.get("saved_at")), done)) is not None:
                download.append(saved)
            error = record.get("error")
            if isinstance(error, dict) and error.get("code") == "TRANSPORT":
                unreachable += 1
        return cls(
            report=report,
            timeline=Timeline.of(finished),
            detection_s=tuple(detection),
            download_s=tuple(download),
            stalls=_stalls(sorted(t for t, _ in finished)),
            unreachable=unreachable,
        )

    def figures(self) -> dict[str, Any]:
        """Every figure the page draws, JSON-ready."""
        report = self.report
        timeline = self.timeline
        return {
            "jobs": report.jobs,
            "statuses": dict(report.statuses),
            "files": report.files,
            "bytes": report.bytes,
            "failures": [
                {"code": g.code, "message": g.message, "count": g.count, "job_ids": list(g.job_ids)}
                for g in report.failures
            ],
            "timeline": None
            if timeline is None
            else {
                "start": _iso(timeline.start),
                "step_s": timeline.step_s,
                "counts": {s: list(c) for s, c in timeline.counts.items()},
            },
            "detection_s": _pct(Percentiles.of(self.detection_s)),
            "download_s": _pct(Percentiles.of(self.download_s)),
            "stalls": [
                {"start": _iso(start), "seconds": round(seconds, 3)}
                for start, seconds in self.stalls
            ],
            "unreachable": self.unreachable,
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _stalls(moments: Sequence[datetime]) -> tuple[tuple[datetime, float], ...]:
    """The longest stretches between two consecutive finishes (of `moments`, in order) that
    last over STALL_MIN_S and STALL_FACTOR times the median stretch: where a steady run stopped
    finishing jobs. At most MAX_STALLS, longest first."""
    gaps = [(a, (b - a).total_seconds()) for a, b in itertools.pairwise(moments)]
    if len(gaps) < 2:
        return ()
    ordered = sorted(g for _, g in gaps)
    threshold = max(STALL_MIN_S, STALL_FACTOR * ordered[len(ordered) // 2])
    stalls = sorted((g for g in gaps if g[1] > threshold), key=lambda g: -g[1])
    return tuple(stalls[:MAX_STALLS])


def _pct(p: Percentiles | None) -> dict[str, float] | None:
    if p is None:
        return None
    return {"count": p.count, "p50": p.p50, "p90": p.p90, "p99": p.p99, "max": p.max}


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _step(seconds: int) -> str:
    if seconds % 3600 == 0:
        return "hour" if seconds == 3600 else f"{seconds // 3600} hours"
    if seconds % 60 == 0:
        return "minute" if seconds == 60 else f"{seconds // 60} minutes"
    return "second" if seconds == 1 else f"{seconds} seconds"


def _colour(status: str) -> str:
    return COLOURS.get(status, OTHER_COLOUR)


W, H = 1080, 200  # chart size (SVG user units)
PAD_L, PAD_B, PAD_T = 48, 28, 10


def _timeline_svg(timeline: Timeline, stalls: Sequence[tuple[datetime, float]]) -> str:
    totals = [sum(c[i] for c in timeline.counts.values()) for i in range(timeline.buckets)]
    top = max(totals) or 1
    plot_w, plot_h = W - PAD_L - 10, H - PAD_B - PAD_T
    bar = plot_w / timeline.buckets
    parts = [_axis(top, plot_h)]
    per_second = plot_w / (timeline.buckets * timeline.step_s)
    for start, seconds in stalls:  # shaded behind the bars
        x = PAD_L + (start - timeline.start).total_seconds() * per_second
        parts.append(
            f'<rect x="{x:.1f}" y="{PAD_T}" width="{seconds * per_second:.1f}" '
            f'height="{plot_h}" class="stall"><title>no job finished for {_duration(seconds)}'
            "</title></rect>"
        )
    for i in range(timeline.buckets):
        y = float(PAD_T + plot_h)
        at = timeline.start.timestamp() + i * timeline.step_s
        when = datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S")
        for status, counts in timeline.counts.items():
            if not counts[i]:
                continue
            height = counts[i] / top * plot_h
            y -= height
            parts.append(
                f'<rect x="{PAD_L + i * bar + 1:.1f}" y="{y:.1f}" width="{max(bar - 2, 1):.1f}" '
                f'height="{height:.1f}" fill="{_colour(status)}"><title>{when} UTC: '
                f"{counts[i]:,} {escape(printable(status))}</title></rect>"
            )
    ticks = max(1, timeline.buckets // 8)
    for i in range(0, timeline.buckets, ticks):
        at = timeline.start.timestamp() + i * timeline.step_s
        label = datetime.fromtimestamp(at, UTC).strftime(
            "%H:%M:%S" if timeline.step_s < 60 else "%H:%M"
        )
        x = PAD_L + i * bar
        anchor = "end" if x > W - 60 else "start"
        parts.append(
            f'<text x="{x:.1f}" y="{H - 8}" class="tick" text-anchor="{anchor}">{label}</text>'
        )
    return _svg(parts)


def _axis(top: float, plot_h: float, unit: str = "") -> str:
    lines = []
    for fraction in (0, 0.5, 1):
        y = PAD_T + plot_h - fraction * plot_h
        value = top * fraction
        label = f"{value:,.0f}" if value == int(value) or top >= 10 else f"{value:,.1f}"
        lines.append(
            f'<line x1="{PAD_L}" x2="{W - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
            f"{label}{unit}</text>"
        )
    return "".join(lines)


def _histogram_svg(values: Sequence[float], colour: str) -> str:
    """A histogram of `values` from 0 to their p99 (the slowest 1% in the last bin)."""
    pct = Percentiles.of(values)
    assert pct is not None
    edge = pct.p99 or pct.max or 1.0
    width = edge / HISTOGRAM_BINS
    bins = [0] * HISTOGRAM_BINS
    for value in values:
        bins[max(0, min(HISTOGRAM_BINS - 1, int(value / width)))] += 1
    top = max(bins) or 1
    plot_w, plot_h = W - PAD_L - 10, H - PAD_B - PAD_T
    bar = plot_w / HISTOGRAM_BINS
    parts = [_axis(top, plot_h)]
    for i, n in enumerate(bins):
        if n:
            height = n / top * plot_h
            low, high = _duration(i * width), _duration((i + 1) * width)
            parts.append(
                f'<rect x="{PAD_L + i * bar + 1:.1f}" y="{PAD_T + plot_h - height:.1f}" '
                f'width="{bar - 2:.1f}" height="{height:.1f}" fill="{colour}">'
                f"<title>{low} to {high}: {n:,} jobs</title></rect>"
            )
    marks = (("p50", pct.p50), ("p90", pct.p90), ("p99", pct.p99))
    for row, (name, value) in enumerate(marks):
        x = PAD_L + min(value, edge) / edge * plot_w
        # Labels on rows of their own (p90 and p99 are often close); right of the line unless
        # that runs off the chart.
        anchor, dx = ("end", -4) if x > W - 160 else ("start", 4)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_T}" y2="{PAD_T + plot_h}" class="mark"/>'
            f'<text x="{x + dx:.1f}" y="{PAD_T + 12 + 14 * row}" class="mark-label" '
            f'text-anchor="{anchor}">{name} {_duration(value)}</text>'
        )
    for i in range(0, HISTOGRAM_BINS + 1, 5):
        anchor = "end" if i == HISTOGRAM_BINS else "start"
        parts.append(
            f'<text x="{PAD_L + i * bar:.1f}" y="{H - 8}" class="tick" text-anchor="{anchor}">'
            f"{_duration(i * width)}</text>"
        )
    return _svg(parts)


def _svg(parts: list[str]) -> str:
    return (
        f'<svg viewBox="0 0 {W} {H}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg">'
        + "".join(parts)
        + "</svg>"
    )


def _delays(title: str, values: Sequence[float], colour: str, missing: str) -> str:
    if not values:
        return f"<section><h2>{title}</h2><p class='note'>{missing}</p></section>"
    pct = Percentiles.of(values)
    assert pct is not None
    summary = (
        f"{pct.count:,} jobs: median {_duration(pct.p50)}, p90 {_duration(pct.p90)}, "
        f"p99 {_duration(pct.p99)}, slowest {_duration(pct.max)}"
    )
    return (
        f"<section><h2>{title}</h2><p class='note'>{summary}</p>"
        f"{_histogram_svg(values, colour)}</section>"
    )


CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;
max-width:1120px;color:#1b1b1b;background:#fff;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 6px}
.note{color:#555;margin:2px 0 8px}
.tiles{display:flex;gap:10px;flex-wrap:wrap;margin:14px 0}
.tile{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:92px}
.tile b{display:block;font-size:22px}.tile span{color:#555;font-size:12px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
.legend{display:flex;gap:14px;font-size:12px;color:#333}
svg .grid{stroke:#e5e5e5}svg .stall{fill:#fbe3d6}svg .tick{font-size:11px;fill:#666}
svg .mark{stroke:#333;stroke-dasharray:3 3}svg .mark-label{font-size:11px;fill:#333}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:4px 8px;
border-bottom:1px solid #eee;vertical-align:top}th{font-weight:600;color:#333}
td.n{text-align:right;font-variant-numeric:tabular-nums}td:first-child{white-space:nowrap}code{font-size:12px;color:#444}
"""


def render(night: Night, title: str) -> str:
    """The page, as one HTML document."""
    report = night.report
    figures = night.figures()
    tiles = [("jobs", f"{report.jobs:,}", "#1b1b1b")]
    tiles += [(s, f"{n:,}", _colour(s)) for s, n in report.statuses.items() if n or s == "FAILED"]
    tiles.append(("files saved", f"{report.files:,}", "#1b1b1b"))
    tile_html = "".join(
        f'<div class="tile"><b style="color:{colour}">{value}</b><span>{escape(printable(name))}'
        "</span></div>"
        for name, value, colour in tiles
    )
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>watcher report: {escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>The night of {escape(title)}</h1>",
    ]
    timeline = night.timeline
    if timeline is not None:
        end = timeline.start.timestamp() + timeline.buckets * timeline.step_s
        span = (
            f"{timeline.start:%Y-%m-%d %H:%M} to "
            f"{datetime.fromtimestamp(end, UTC):%H:%M} UTC, per {_step(timeline.step_s)}"
        )
        parts.append(f"<p class='note'>Jobs finished {span}.</p>")
    parts.append(f"<div class='tiles'>{tile_html}</div>")
    if timeline is not None:
        legend = "".join(
            f"<span><i class='swatch' style='background:{_colour(s)}'></i>"
            f"{escape(printable(s))} {sum(c):,}</span>"
            for s, c in timeline.counts.items()
        )
        parts.append(
            f"<section><h2>Jobs finished over time, by status</h2><div class='legend'>{legend}"
            f"</div>{_timeline_svg(timeline, night.stalls)}</section>"
        )
    parts.append(
        _delays(
            "Detection: first reading to final state",
            night.detection_s,
            "#0072B2",
            "No job has both a first reading and a final state.",
        )
    )
    parts.append(
        _delays(
            "Download: final state to files saved",
            night.download_s,
            "#56B4E9",
            "This manifest does not record when files were saved (no <code>saved_at</code>).",
        )
    )
    parts.append(_service(night))
    if report.failures:
        rows = "".join(
            f"<tr><td><i class='swatch' style='background:{_colour(_status_of(g.code))}'></i>"
            f"<code>{escape(printable(g.code))}</code></td><td class='n'>{g.count:,}</td>"
            f"<td>{escape(printable(g.message)) or '<i>(no message)</i>'}</td>"
            f"<td><code>{escape(', '.join(map(printable, g.job_ids)))}</code></td></tr>"
            for g in report.failures
        )
        parts.append(
            "<section><h2>Failures, by code and message</h2><table><tr><th>code</th>"
            f"<th>jobs</th><th>message</th><th>examples</th></tr>{rows}</table></section>"
        )
    else:
        parts.append("<section><h2>Failures</h2><p class='note'>None.</p></section>")
    # "<" only occurs inside JSON strings, where \u003c means the same: no "</script>" or
    # "<!--" from a job's error message can end or confuse the block.
    data = orjson.dumps(figures).decode().replace("<", "\\u003c")
    parts.append(f"<script type='application/json' id='figures'>{data}</script></body></html>")
    return "".join(parts) + "\n"


def _service(night: Night) -> str:
    """The section on outages and throttling: what the manifest can tell of them."""
    items = []
    for start, seconds in night.stalls:
        items.append(
            f"<li>no job finished for {_duration(seconds)} from {start:%Y-%m-%d %H:%M:%S} UTC</li>"
        )
    if night.unreachable:
        items.append(
            f"<li>{night.unreachable:,} jobs ended <code>ERROR TRANSPORT</code>: the API did "
            "not answer them</li>"
        )
    body = f"<ul>{''.join(items)}</ul>" if items else "<p class='note'>None seen.</p>"
    return (
        "<section><h2>Outages and throttling</h2><p class='note'>The manifest records neither "
        "directly (the run's summary and <code>progress</code> events count throttled answers); "
        "they show as stretches in which a steady run stopped finishing jobs, and as jobs the "
        f"API did not answer.</p>{body}</section>"
    )


def _status_of(code: str) -> str:
    return "INVALID" if code.startswith("INVALID") else "FAILED"


def load(
    path: str, warn: Callable[[str], None] | None = None
) -> tuple[Report, list[dict[str, Any]]]:
    """The report of the manifest at `path` (`-`: stdin) and each job's counting record (the
    ledger's rule), in one reading.

    ConfigError when the file does not exist; LedgerError when it cannot be read.
    """
    ledger = read_ledger(path, warn=warn)
    records = [orjson.loads(line.result.to_json()) for line in ledger.lines.values()]
    return Report.from_ledger(ledger), records


def write(path: Path, report: Report, records: Sequence[Mapping[str, Any]], title: str) -> None:
    """Write the page of a manifest's counting `records` (in order), summed up in `report`, to
    `path`."""
    night = Night.of(report, records)
    path.write_text(render(night, title), encoding="utf-8")
