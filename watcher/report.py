"""`watcher report`: what a manifest says, in one table (or one JSON object).

The manifest is read by the ledger (`ledger.py`), whose rules hold here: a line that is not a
manifest record (a torn last line from a killed run, a stray edit, a wrong shape) is skipped with
a warning naming its line, and counted; of the lines for one job the counting line wins (the
latest `finished_at`, on a tie the later line) and the others are counted as superseded.

`Report.from_records` builds the same report from manifest dicts, so `watcher run` can print it at
the end of a run with the run's own counters (`RunCounts`) added.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from watcher.errors import ConfigError
from watcher.ledger import BadLine, Ledger, Line, parse_record, read_manifest
from watcher.manifest import STATUSES, Tally

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
    """The jobs that ended with one error code: how many, one message, a few job ids.

    `job_ids` holds up to 3 examples, in manifest order; a line without a job id is shown as
    `source:line`.
    """

    code: str
    count: int
    message: str
    job_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RunCounts:
    """What `watcher run` itself counted, for the end-of-run summary."""

    api_requests: int
    retries: int
    throttled: int
    elapsed_s: float


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
            for code, (count, message, examples) in tally.failures.items()
        ]
        jobs = sum(tally.statuses.values())
        return cls(
            jobs=jobs,
            statuses=dict(statuses),
            files=tally.files,
            bytes=tally.bytes,
            failures=tuple(sorted(groups, key=_largest_first)),
            elapsed_s=Percentiles.of(tally.elapsed),
            polls=Percentiles.of(tally.polls),
            records=jobs,
        )

    @classmethod
    def from_path(cls, path: str, *, warn: Callable[[str], None] | None = None) -> Report:
        """The report of the manifest at `path` (`-`: stdin); `warn` hears of each bad line.

        ConfigError when the file does not exist; LedgerError when it cannot be read.
        """
        if path != "-" and not Path(path).is_file():
            raise ConfigError(f"manifest {path!r}: no such file")
        ledger = Ledger()
        for item in read_manifest(path):
            if isinstance(item, BadLine) and warn is not None:
                warn(str(item))
            ledger.add(item)
        return cls.from_ledger(ledger)

    @classmethod
    def _summarise(cls, winners: list[Mapping[str, Any]], count: int, unreadable: int) -> Report:
        statuses: Counter[str] = Counter(dict.fromkeys(STATUSES, 0))
        files = size = 0
        groups: dict[str, list[Mapping[str, Any]]] = {}
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
                error = record.get("error")
                code = error.get("code") if isinstance(error, dict) else None
                groups.setdefault(str(code) if code else "(no error code)", []).append(record)
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
            failures=tuple(sorted(map(_group, groups, groups.values()), key=_largest_first)),
            elapsed_s=Percentiles.of(elapsed),
            polls=Percentiles.of(polls),
            records=count,
            superseded=count - len(winners),
            unreadable=unreadable,
        )


def _largest_first(group: FailureGroup) -> tuple[int, str]:
    return (-group.count, group.code)


def _group(code: str, records: list[Mapping[str, Any]]) -> FailureGroup:
    message = ""
    for record in records:
        error = record.get("error")
        if isinstance(error, dict) and error.get("message"):
            message = str(error["message"])
            break
    examples = tuple(_job_label(r) for r in records[:MAX_EXAMPLES])
    return FailureGroup(code, len(records), message, examples)


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

    With `run`, the run's own counters (API requests, retries, throttled answers, run time) are
    rows of the table too. Ends with a newline.
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
            ("retries", f"{run.retries:,}", ""),
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
        failures: list[tuple[str, ...]] = [("failures by code", "count", "example")]
        for group in report.failures:
            failures.append((printable(group.code), f"{group.count:,}", _short(group.message)))
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """MANIFEST and --format."""
    parser.add_argument("manifest", metavar="MANIFEST", help="a manifest.jsonl; '-' is stdin")
    parser.add_argument(
        "--format", choices=["text", "json"], default="text", help="text table or JSON (text)"
    )


def run(args: argparse.Namespace) -> int:
    """Print the report; 0 if every job SUCCEEDed and every line was readable, else 1.

    ConfigError when the manifest does not exist.
    """
    report = Report.from_path(
        args.manifest, warn=lambda message: print(f"watcher: warning: {message}", file=sys.stderr)
    )
    text = render_json(report) if args.format == "json" else render_text(report)
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0 if report.ok else 1
