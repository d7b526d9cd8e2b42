"""`watcher report`: what a manifest says, in one table (or one JSON object).

The manifest is read by the ledger (`ledger.py`), whose rules hold here: a line that is not a
manifest record (a torn last line from a killed run, a stray edit, a wrong shape) is skipped with
a warning naming its line, and counted; of the lines for one job the counting line wins (the
latest `finished_at`, on a tie the later line) and the others are counted as superseded.

`Report.from_records` builds the same report from manifest dicts, so `watcher run` can print it at
the end of a run with the run's own counters (`RunCounts`) added. The command is
`watcher._commands.report`.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson
import structlog

from watcher._errors import ConfigError
from watcher._ledger import (
    BadLine,
    BatchSummary,
    Ledger,
    Line,
    parse_record,
    read_manifest,
    render_batch,
)
from watcher._manifest import STATUSES, Tally

log = structlog.get_logger("watcher.report")

MAX_EXAMPLES = 3
MAX_MESSAGE_CHARS = 100


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Nearest-rank percentiles (each is a value that occurred) of `count` values."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Percentiles | None:
        """The percentiles of `values`; None when there are none."""
        ordered = sorted(values)
        if not ordered:
            return None

        def rank(p: float) -> float:
            return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

        return cls(len(ordered), rank(50), rank(90), rank(99), ordered[-1])


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """The jobs that ended with one error code and one message: how many, a few job ids.

    A code whose jobs failed with several messages is several groups, each with its own count
    and examples, so no message stands for jobs it does not describe. `job_ids` holds up to 3
    examples, in manifest order; a line without a job id is shown as `source:line`.
    """

    code: str
    count: int
    message: str
    job_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RunCounts:
    """What `watcher run` itself counted, for the end-of-run summary.

    `retries` counts every retry by its kind (`poll`, `list page`, `download`, `fresh links`,
    ...); kinds absent or 0 had none.
    """

    api_requests: int
    retries: Mapping[str, int]
    throttled: int
    elapsed_s: float

    @property
    def total_retries(self) -> int:
        """Retries of every kind."""
        return sum(self.retries.values())


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _job_label(record: Mapping[str, Any]) -> str:
    job_id = record.get("job_id")
    if isinstance(job_id, str):
        return job_id
    return f"{record.get('source')}:{record.get('line')}"


@dataclass(frozen=True, slots=True)
class Report:
    """A manifest, summed up. Counts cover the winning line of each job only.

    `statuses` has every manifest status (0 when absent) and any other status found; `records`
    counts every record read, `superseded` those replaced by a later line for the same job,
    `unreadable` the lines or records skipped as not being manifest records.
    """

    jobs: int
    statuses: Mapping[str, int]
    files: int
    bytes: int
    failures: tuple[FailureGroup, ...]
    elapsed_s: Percentiles | None
    polls: Percentiles | None
    records: int = 0
    superseded: int = 0
    unreadable: int = 0

    @property
    def ok(self) -> bool:
        """Whether every job SUCCEEDed and every line was readable."""
        return self.unreadable == 0 and all(
            n == 0 for status, n in self.statuses.items() if status != "SUCCEED"
        )

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], *, unreadable: int = 0) -> Report:
        """The report of manifest records, in manifest order, by the ledger's counting rule.

        Records that are not manifest records (see `ledger.parse_record`) are counted as
        unreadable, on top of `unreadable` (lines the caller already skipped).
        """
        ledger = Ledger()
        for index, record in enumerate(records, 1):
            try:
                ledger.add(Line("<records>", index, parse_record(record)))
            except ValueError as exc:
                ledger.add(BadLine("<records>", index, str(exc)))
        return cls.from_ledger(ledger, unreadable=unreadable)

    @classmethod
    def from_ledger(cls, ledger: Ledger, *, unreadable: int = 0) -> Report:
        """The report of a ledger: its counting lines, its superseded and bad lines."""
        winners: list[Mapping[str, Any]] = [line.result.to_dict() for line in ledger.lines.values()]
        return cls._summarise(winners, ledger.read, unreadable + len(ledger.bad))

    @classmethod
    def from_tally(cls, tally: Tally) -> Report:
        """The report of one run's results, as its manifest writer tallied them."""
        statuses: Counter[str] = Counter(dict.fromkeys(STATUSES, 0))
        statuses.update(tally.statuses)
        groups = [
            FailureGroup(code, count, message, tuple(examples))
            for (code, message), (count, examples) in tally.failures.items()
        ]
        jobs = sum(tally.statuses.values())
        return cls(
            jobs=jobs,
            statuses=dict(statuses),
            files=tally.files,
            bytes=tally.bytes,
            failures=_ordered(groups),
            elapsed_s=Percentiles.of(tally.elapsed),
            polls=Percentiles.of(tally.polls),
            records=jobs,
        )

    @classmethod
    def from_path(cls, path: str, *, warn: Callable[[str], None] | None = None) -> Report:
        """The report of the manifest at `path` (`-`: stdin); `warn` hears of each bad line.

        ConfigError when the file does not exist; LedgerError when it cannot be read.
        """
        return cls.from_ledger(read_ledger(path, warn=warn))

    @classmethod
    def _summarise(cls, winners: list[Mapping[str, Any]], count: int, unreadable: int) -> Report:
        statuses: Counter[str] = Counter(dict.fromkeys(STATUSES, 0))
        files = size = 0
        groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        elapsed: list[float] = []
        polls: list[int] = []
        for record in winners:
            status = record["status"]
            statuses[status] += 1
            saved = record.get("files")
            for info in saved.values() if isinstance(saved, dict) else ():
                if isinstance(info, dict):
                    files += 1
                    size += int(_number(info.get("bytes")) or 0)
            if status != "SUCCEED":
                groups.setdefault(_failure_key(record), []).append(record)
            if status != "INVALID":
                if (seconds := _number(record.get("elapsed_s"))) is not None:
                    elapsed.append(seconds)
                if isinstance(n := record.get("polls"), int) and not isinstance(n, bool):
                    polls.append(n)
        return cls(
            jobs=len(winners),
            statuses=dict(statuses),
            files=files,
            bytes=size,
            failures=_ordered(
                FailureGroup(
                    code, len(rs), message, tuple(_job_label(r) for r in rs[:MAX_EXAMPLES])
                )
                for (code, message), rs in groups.items()
            ),
            elapsed_s=Percentiles.of(elapsed),
            polls=Percentiles.of(polls),
            records=count,
            superseded=count - len(winners),
            unreadable=unreadable,
        )


def read_ledger(path: str, *, warn: Callable[[str], None] | None = None) -> Ledger:
    """The ledger of the manifest at `path` (`-`: stdin); `warn` hears of each bad line.

    ConfigError when the file does not exist; LedgerError when it cannot be read.
    """
    if path != "-" and not Path(path).is_file():
        raise ConfigError(f"manifest {path!r}: no such file")
    ledger = Ledger()
    for item in read_manifest(path):
        if isinstance(item, BadLine) and warn is not None:
            warn(str(item))
        ledger.add(item)
    return ledger


def _failure_key(record: Mapping[str, Any]) -> tuple[str, str]:
    """The (code, message) a failed record is grouped under."""
    error = record.get("error")
    if not isinstance(error, dict):
        return ("(no error code)", "")
    code, message = error.get("code"), error.get("message")
    return (str(code) if code else "(no error code)", str(message) if message else "")


def _ordered(groups: Iterable[FailureGroup]) -> tuple[FailureGroup, ...]:
    """Codes with the most jobs first; within a code, its messages with the most jobs first."""
    groups = list(groups)
    per_code: Counter[str] = Counter()
    for group in groups:
        per_code[group.code] += group.count
    return tuple(sorted(groups, key=lambda g: (-per_code[g.code], g.code, -g.count, g.message)))


def printable(text: str) -> str:
    """`text` with every control or invisible format character escaped (no ANSI sequences)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _short(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _table(rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    """Rows as aligned lines: columns in `right` right-aligned, the last column left ragged."""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(map(len, rows)))]
    lines = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if i in right:
                cells.append(cell.rjust(widths[i]))
            elif i == len(row) - 1:
                cells.append(cell)
            else:
                cells.append(cell.ljust(widths[i]))
        lines.append("  ".join(cells).rstrip())
    return lines


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def render_text(report: Report, run: RunCounts | None = None) -> str:
    """The report as an aligned plain-text table (no colours, no control characters).

    With `run`, the run's own counters (API requests, retries in all and by kind, throttled
    answers, run time) are rows of the table too. Failures come one group per code and
    message, each with its count and example jobs. Ends with a newline.
    """
    rows: list[tuple[str, ...]] = [("jobs", f"{report.jobs:,}", "")]
    rows += [(f"  {printable(s)}", f"{n:,}", "") for s, n in report.statuses.items()]
    rows += [
        ("files saved", f"{report.files:,}", ""),
        ("bytes saved", f"{report.bytes:,}", f"({_size(report.bytes)})"),
        ("superseded lines", f"{report.superseded:,}", ""),
        ("unreadable lines", f"{report.unreadable:,}", ""),
    ]
    if run is not None:
        rows += [
            ("API requests", f"{run.api_requests:,}", ""),
            ("retries", f"{run.total_retries:,}", ""),
            *((f"  {printable(kind)}", f"{n:,}", "") for kind, n in run.retries.items() if n),
            ("throttled (429)", f"{run.throttled:,}", ""),
            ("run time (s)", f"{run.elapsed_s:,.1f}", ""),
        ]
    out = _table(rows, right={1})

    latency: list[tuple[str, ...]] = []
    for name, pct, fmt in (("elapsed_s", report.elapsed_s, ".3f"), ("polls", report.polls, ".0f")):
        if pct is not None:
            values = (pct.p50, pct.p90, pct.p99, pct.max)
            latency.append((name, *(format(v, fmt) for v in values), f"({pct.count:,} jobs)"))
    if latency:
        out += ["", *_table([("", "p50", "p90", "p99", "max", ""), *latency], right={1, 2, 3, 4})]

    if report.failures:
        failures: list[tuple[str, ...]] = [("failures by code", "count", "message")]
        for group in report.failures:
            message = _short(group.message) if group.message else "(no message)"
            failures.append((printable(group.code), f"{group.count:,}", message))
            failures.append(("", "", "jobs: " + ", ".join(map(printable, group.job_ids))))
        out += ["", *_table(failures, right={1})]
    return "\n".join(out) + "\n"


def report_dict(report: Report, run: RunCounts | None = None) -> dict[str, Any]:
    """The report (and the run's counters, when given) as JSON-ready values, by field name."""
    doc = asdict(report)
    if run is not None:
        doc["run"] = {**asdict(run), "elapsed_s": round(run.elapsed_s, 3)}
    return doc


def render_json(report: Report, run: RunCounts | None = None) -> str:
    """The report as one line of JSON (newline included), for machines and `jq`."""
    return orjson.dumps(report_dict(report, run), option=orjson.OPT_APPEND_NEWLINE).decode()


def emit_summary(
    summary: Report,
    run: RunCounts,
    *,
    batch: BatchSummary,
    cadence_s: float | None,
    quiet: bool,
    json: bool,
    stream: TextIO | None = None,
) -> None:
    """The end-of-run summary, in the form the run's output calls for: what this run did
    (`summary`, `run`) and the whole batch's totals beside it (`batch`).

    Nothing with `quiet` (the exit code says the result); with `json` logs one `run summary`
    log event (info) holding every figure of `report_dict` and the batch's, so stderr stays
    JSON lines; otherwise the text tables on `stream` (stderr).
    """
    if quiet:
        return
    if json:
        figures = report_dict(summary, run)
        figures["skipped"] = batch.skipped
        figures["batch"] = {
            "jobs": batch.jobs,
            "statuses": dict(batch.batch),
            "ok": batch.ok,
            "watched": batch.watched,
            "rewatched": batch.rewatched,
            "skipped": batch.skipped,
        }
        figures["effective_cadence_s"] = None if cadence_s is None else round(cadence_s, 3)
        log.info("run summary", **figures)
        return
    extra = "" if cadence_s is None else f"effective per-job cadence: {cadence_s:.2f} s\n"
    out = sys.stderr if stream is None else stream
    out.write(render_text(summary, run) + "\n" + render_batch(batch) + extra)
    out.flush()
