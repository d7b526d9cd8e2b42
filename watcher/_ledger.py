"""The ledger: what the manifest says of each job of a batch, read back by one rule.

Every reader of a manifest reads it here: resume (`watcher run` again), `watcher report` and
`watcher merge`. Each line is parsed into the record it was written from (`JobResult`).

**Which line counts for a job** (its id; for an INVALID line without one, its `source` and
`line`): the line with the latest `finished_at`; on a tie, or when neither has one, the line
read later. Within one manifest that is the job's last line; across merged manifests it is the
newest answer.

**Damage**: a line that is not JSON, or not a record of the right shape (an unknown status,
a field of the wrong type, a file entry without path, size or sha256, a job id missing on a
line other than INVALID) is a `BadLine` with its number and the reason, and is treated as absent:
it never stops a command and is never taken as done.

**Paths**: lines with `"v": 2` hold paths relative to the manifest's folder and are resolved
there. Lines without `v` (written by earlier versions) hold paths relative to the working
directory of the run that wrote them, or absolute: each is tried relative to the manifest's
folder first, then as written.

**Done**: a SUCCEED line is done only when it lists files and each is on disk with its recorded
size and `mtime_ns` (the cheap check, a `stat` per file), or with its recorded size and sha256
(`verify`; lines that recorded no `mtime_ns`; files whose mtime changed, as a copy makes). A
SUCCEED line without files is not done.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from watcher._errors import LedgerError
from watcher._manifest import STATUSES, ErrorInfo, JobResult, SavedFile, os_reason

_OLDEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Line:
    """One manifest line read back: where it was, and its record."""

    source: str
    line: int
    result: JobResult


@dataclass(frozen=True, slots=True)
class BadLine:
    """A manifest line that is not a record, and why."""

    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: skipped: {self.reason}"


def _text(record: Mapping[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"'{name}' is not a string")
    return value


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"'{name}' is not a whole number")
    return value


def _number(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"'{name}' is not a number")
    return float(value)


def _time(record: Mapping[str, Any], name: str) -> datetime | None:
    """A time field as an aware datetime, parsed rather than compared as text (`...:07Z` and
    `...:07.5Z` do not sort as strings do)."""
    text = _text(record, name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{name}' is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _where(path: str, prefix: str | None, version: int) -> str:
    """`path` as read from a manifest whose folder is `prefix` (ending in a separator)."""
    if prefix is None or path.startswith(os.sep):
        return path
    here = prefix + path
    if version >= 2 or os.path.exists(here):
        return here
    return path  # an earlier version's path, relative to the directory it was run from


def _file(kind: str, entry: object, prefix: str | None, version: int) -> SavedFile:
    # `type(...) is` rather than isinstance: bool is not a size; this runs per file on resume
    if not isinstance(entry, dict):
        raise ValueError(f"file {kind!r} is not an object")
    path, sha256, size = entry.get("path"), entry.get("sha256"), entry.get("bytes")
    if type(path) is not str or type(sha256) is not str:
        raise ValueError(f"file {kind!r}: 'path' or 'sha256' is missing or not a string")
    if type(size) is not int or size < 0:
        raise ValueError(f"file {kind!r}: 'bytes' is not a whole number")
    mtime = entry.get("mtime_ns")
    if mtime is not None and type(mtime) is not int:
        raise ValueError(f"file {kind!r}: 'mtime_ns' is not a whole number")
    return SavedFile(
        path=_where(path, prefix, version),
        bytes=size,
        sha256=sha256,
        duration_s=_number(entry.get("duration_s"), f"files.{kind}.duration_s"),
        mtime_ns=mtime,
    )


def parse_record(record: object, base: Path | None = None) -> JobResult:
    """The record a manifest line holds, its paths resolved against `base` (the manifest's
    folder; None: as written). ValueError says what is wrong with it."""
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    version = record.get("v", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError("'v' is not a version number")
    status = record.get("status")
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    job_id = _text(record, "job_id")
    if job_id is None and status != "INVALID":
        raise ValueError("no 'job_id'")
    files = record.get("files") or {}
    if not isinstance(files, dict):
        raise ValueError("'files' is not an object")
    error = record.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise ValueError("'error' is not an object")
        error = ErrorInfo(
            code=_text(error, "code") or "",
            message=_text(error, "message") or "",
            request_id=_text(error, "request_id"),
        )
    prefix = None if base is None else os.path.join(base, "")
    meta = record.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValueError("'meta' is not an object")
    line = record.get("line")
    polls = record.get("polls")
    return JobResult(
        job_id=job_id,
        status=status,
        state=_text(record, "state"),
        files={kind: _file(kind, entry, prefix, version) for kind, entry in files.items()},
        polls=0 if polls is None else _int(polls, "polls"),
        first_poll_at=_time(record, "first_poll_at"),
        finished_at=_time(record, "finished_at"),
        elapsed_s=_number(record.get("elapsed_s"), "elapsed_s"),
        error=error,
        meta=meta,
        source=_text(record, "source"),
        line=None if line is None else _int(line, "line"),
        saved_at=_time(record, "saved_at"),
    )


def read_lines(stream: Iterable[bytes], source: str, base: Path | None) -> Iterator[Line | BadLine]:
    """Each line of a manifest as a Line, or a BadLine; blank lines are skipped silently."""
    for number, raw in enumerate(stream, 1):
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if not raw.endswith(b"\n"):
                reason = "torn last line (no newline at its end): was the run killed mid-write?"
            else:
                reason = f"not valid JSON ({exc})"
            yield BadLine(source, number, reason)
            continue
        try:
            yield Line(source, number, parse_record(record, base))
        except ValueError as exc:
            yield BadLine(source, number, str(exc))


def read_manifest(path: str) -> Iterator[Line | BadLine]:
    """Each line of the manifest at `path` (`-`: stdin, paths as written).

    LedgerError when it does not exist or cannot be read.
    """
    if path == "-":
        yield from read_lines(sys.stdin.buffer, "<stdin>", None)
        return
    try:
        with open(path, "rb") as stream:
            yield from read_lines(stream, path, Path(path).parent.absolute())
    except OSError as exc:
        raise LedgerError(f"manifest {path}: cannot read it: {os_reason(exc)}") from exc


def key(result: JobResult, fallback: Hashable = None) -> Hashable:
    """What identifies the job of a record: its id, else its (`source`, `line`)."""
    if result.job_id is not None:
        return ("job", result.job_id)
    if result.source is not None or result.line is not None:
        return ("input", result.source, result.line)
    return ("unknown", fallback)


def _when(result: JobResult) -> datetime:
    return result.finished_at or _OLDEST


@dataclass(slots=True)
class Ledger:
    """The counting line of each job, in order of first appearance, and what was set aside."""

    lines: dict[Hashable, Line] = field(default_factory=dict)
    bad: list[BadLine] = field(default_factory=list)
    read: int = 0
    torn_bytes: int = 0

    def add(self, item: Line | BadLine) -> None:
        """Take one line in, by the counting rule (see the module docstring)."""
        if isinstance(item, BadLine):
            self.bad.append(item)
            return
        self.read += 1
        k = key(item.result, (item.source, item.line))
        held = self.lines.get(k)
        if held is None or _when(item.result) >= _when(held.result):
            self.lines[k] = item  # an existing key keeps its place in the order

    @classmethod
    def of(cls, items: Iterable[Line | BadLine]) -> Ledger:
        """The ledger of lines read in order."""
        ledger = cls()
        for item in items:
            ledger.add(item)
        return ledger

    @property
    def superseded(self) -> int:
        """Lines that lost to a later answer for the same job."""
        return self.read - len(self.lines)

    def job(self, job_id: str) -> JobResult | None:
        """The counting record of `job_id`, if any."""
        line = self.lines.get(("job", job_id))
        return None if line is None else line.result

    def reported(self, source: str, line: int) -> bool:
        """Whether an INVALID line for input `source`:`line` is recorded."""
        return ("input", source, line) in self.lines


def recover(path: Path) -> Ledger:
    """Read the manifest at `path` back for a rerun, first cutting off a torn last line (a
    crash mid-write), so appending continues from a line boundary. A missing file is an empty
    ledger; LedgerError when it cannot be read or repaired."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Ledger()
    except OSError as exc:
        raise LedgerError(f"manifest {path}: cannot read it: {os_reason(exc)}") from exc
    torn = 0
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        torn = len(data) - keep
        try:
            with path.open("r+b") as f:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise LedgerError(
                f"manifest {path}: cannot cut off its torn last line: {os_reason(exc)}"
            ) from exc
        data = data[:keep]
    ledger = Ledger.of(read_lines(data.splitlines(True), str(path), path.parent.absolute()))
    ledger.torn_bytes = torn
    return ledger


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def unchanged(saved: SavedFile) -> bool:
    """Whether `saved` is on disk with its recorded size and mtime: the cheap check, one `stat`."""
    try:
        info = os.stat(saved.path)
    except OSError:
        return False
    return info.st_size == saved.bytes and info.st_mtime_ns == saved.mtime_ns


def intact(saved: SavedFile, *, verify: bool = False) -> bool:
    """Whether `saved` is on disk as recorded: `unchanged`, or else (and always with `verify`)
    its size and sha256, so a file whose mtime changed (a copied or restored batch, a line
    with no mtime) is read rather than fetched again. Blocking."""
    if not verify and unchanged(saved):
        return True
    try:
        return os.stat(saved.path).st_size == saved.bytes and _sha256(saved.path) == saved.sha256
    except OSError:
        return False


def done(result: JobResult, *, verify: bool = False) -> bool:
    """Whether `result` settles its job as SUCCEED: it lists files and each is intact."""
    return (
        result.status == "SUCCEED"
        and bool(result.files)
        and all(intact(f, verify=verify) for f in result.files.values())
    )


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """The batch after a run: each input job's counting status, and what this run did.

    `batch`: the counting statuses of every job of this run's input (the line this run wrote,
    or the ledger's line for a job skipped as settled); `run`: the statuses this run wrote;
    `watched`: jobs this run watched that the ledger did not hold; `rewatched`: those it held
    unsettled; `skipped`: those it held settled.
    """

    batch: Mapping[str, int]
    run: Mapping[str, int]
    watched: int
    rewatched: int
    skipped: int

    @classmethod
    def of(
        cls, written: Mapping[str, int], kept: Mapping[str, int], rewatched: int
    ) -> BatchSummary:
        """From this run's written statuses and the ledger statuses of the jobs it skipped."""
        batch: Counter[str] = Counter(kept)
        batch.update(written)
        done_now = sum(written.values())
        return cls(
            batch=dict(batch),
            run=dict(written),
            watched=max(0, done_now - rewatched),
            rewatched=rewatched,
            skipped=sum(kept.values()),
        )

    @property
    def jobs(self) -> int:
        """Input jobs with a counting line."""
        return sum(self.batch.values())

    @property
    def ok(self) -> bool:
        """Whether every input job's counting line is SUCCEED (exit 0)."""
        return all(n == 0 for status, n in self.batch.items() if status != "SUCCEED")


def render_batch(summary: BatchSummary) -> str:
    """The batch's totals beside this run's figures, as an aligned table ending in a newline."""
    statuses = [s for s in STATUSES if summary.batch.get(s) or summary.run.get(s)] or ["SUCCEED"]
    rows = [
        ("batch", "jobs", "this run"),
        ("  all", f"{summary.jobs:,}", f"{sum(summary.run.values()):,}"),
    ]
    rows += [
        (f"  {s}", f"{summary.batch.get(s, 0):,}", f"{summary.run.get(s, 0):,}") for s in statuses
    ]
    rows += [
        ("watched (new)", "", f"{summary.watched:,}"),
        ("re-watched", "", f"{summary.rewatched:,}"),
        ("skipped as already done", "", f"{summary.skipped:,}"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        f"{a.ljust(widths[0])}  {b.rjust(widths[1])}  {c.rjust(widths[2])}".rstrip()
        for a, b, c in rows
    ]
    return "\n".join(lines) + "\n"
