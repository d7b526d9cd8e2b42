"""The manifest: one JSON line per input job, written once, when the job is final.

One task owns the file (`write_all`); everything else sends it `JobResult`s through a stream.
Lines are only ever appended, flushed and fsynced, so `tail -f manifest.jsonl | jq` follows a run
and a crash loses at most the line being written, which `recover` cuts off on the next run.
The schema is documented in README.md ("Manifest").
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.to_thread
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream

STATUSES = ("SUCCEED", "FAILED", "ERROR", "TIMEOUT", "INVALID")
MAX_BATCH = 512


@dataclass(frozen=True, slots=True)
class SavedFile:
    """A result file on disk: its path, size and SHA-256."""

    path: str
    bytes: int
    sha256: str
    duration_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The file's manifest entry (`duration_s` only for audio)."""
        entry: dict[str, Any] = {"path": self.path, "bytes": self.bytes, "sha256": self.sha256}
        if self.duration_s is not None:
            entry["duration_s"] = round(self.duration_s, 3)
        return entry


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a job did not succeed."""

    code: str
    message: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class JobResult:
    """The final word on one job: the manifest line, before serialisation."""

    job_id: str | None
    status: str
    state: str | None = None
    files: Mapping[str, SavedFile] = field(default_factory=dict)
    polls: int = 0
    first_poll_at: datetime | None = None
    finished_at: datetime | None = None
    elapsed_s: float | None = None
    error: ErrorInfo | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None
    line: int | None = None

    def to_json(self) -> bytes:
        """The manifest line, newline included."""
        record: dict[str, Any] = {
            "job_id": self.job_id,
            "status": self.status,
            "state": self.state,
            "files": {kind: f.to_dict() for kind, f in self.files.items()},
            "polls": self.polls,
            "first_poll_at": self.first_poll_at,
            "finished_at": self.finished_at,
            "elapsed_s": None if self.elapsed_s is None else round(self.elapsed_s, 3),
            "error": None
            if self.error is None
            else {
                "code": self.error.code,
                "message": self.error.message,
                "request_id": self.error.request_id,
            },
            "meta": self.meta,
        }
        if self.status == "INVALID":
            record["source"] = self.source
            record["line"] = self.line
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z)


@dataclass(slots=True)
class Tally:
    """What the manifest received, for the run's summary and exit code: counts, the latency
    figures, and per error code a count, the first message and the first few job ids."""

    statuses: Counter[str] = field(default_factory=Counter)
    files: int = 0
    bytes: int = 0
    elapsed: list[float] = field(default_factory=list)
    polls: list[int] = field(default_factory=list)
    failures: dict[str, tuple[int, str, list[str]]] = field(default_factory=dict)

    def add(self, result: JobResult) -> None:
        """Count one result."""
        self.statuses[result.status] += 1
        self.files += len(result.files)
        self.bytes += sum(f.bytes for f in result.files.values())
        if result.status != "INVALID":
            if result.elapsed_s is not None:
                self.elapsed.append(result.elapsed_s)
            self.polls.append(result.polls)
        if result.error is not None:
            label = result.job_id or f"{result.source}:{result.line}"
            count, message, examples = self.failures.get(result.error.code, (0, "", []))
            if len(examples) < 3:
                examples.append(label)
            self.failures[result.error.code] = (
                count + 1,
                message or result.error.message,
                examples,
            )

    @property
    def all_succeeded(self) -> bool:
        """Whether no job ended otherwise than SUCCEED (true for an empty run)."""
        return set(self.statuses) <= {"SUCCEED"}


def open_manifest(path: Path | None) -> IO[bytes]:
    """The manifest opened for appending; None means stdout."""
    if path is None:
        return sys.stdout.buffer
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


def _append(stream: IO[bytes], data: bytes, durable: bool) -> None:
    stream.write(data)
    stream.flush()
    if durable:
        os.fsync(stream.fileno())


async def write_all(
    stream: IO[bytes],
    results: MemoryObjectReceiveStream[JobResult],
    tally: Tally,
    *,
    durable: bool = True,
    on_written: Callable[[JobResult], Awaitable[None]] | None = None,
) -> None:
    """Write every result received until all senders close, counting each in `tally` and then
    telling `on_written` (if given) once its line is on disk.

    Lines are appended, flushed and (when `durable`) fsynced before the next batch; a batch is
    whatever has queued up meanwhile (group commit), so a busy run pays one fsync per batch
    rather than per line, and no line waits for more than one fsync. Writes run in a worker
    thread and are never abandoned half-way, even on cancellation.
    """
    async with results:
        async for first in results:
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(results.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            data = b"".join(result.to_json() for result in batch)
            await anyio.to_thread.run_sync(_append, stream, data, durable)
            for result in batch:
                tally.add(result)
                if on_written is not None:
                    await on_written(result)


@dataclass(frozen=True, slots=True)
class Previous:
    """What an earlier run's manifest holds: each job's last line, and where INVALID lines were."""

    jobs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    invalid: frozenset[tuple[str, int]] = frozenset()
    torn_bytes: int = 0
    unreadable_lines: tuple[int, ...] = ()


def recover(path: Path) -> Previous:
    """Read a manifest back, first cutting off a torn last line (a crash mid-write).

    After the cut the file is valid JSONL again and appending continues from a line boundary.
    A missing file is an empty manifest. Lines that are not JSON objects are skipped and their
    numbers reported in `unreadable_lines`.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Previous()
    torn = 0
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        torn = len(data) - keep
        with path.open("r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        data = data[:keep]
    jobs: dict[str, Mapping[str, Any]] = {}
    invalid: set[tuple[str, int]] = set()
    unreadable: list[int] = []
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            unreadable.append(number)
        elif record.get("status") == "INVALID":
            invalid.add((str(record.get("source")), int(record.get("line") or 0)))
        elif isinstance(job_id := record.get("job_id"), str):
            jobs[job_id] = record
    return Previous(jobs, frozenset(invalid), torn, tuple(unreadable))
