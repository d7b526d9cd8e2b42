"""The manifest: one JSON line per input job, written once, when the job is final.

One task owns the file (`write_all`); everything else sends it `JobResult`s through a stream.
Lines are appended and flushed one by one, so `tail -f manifest.jsonl | jq` follows a run.
The schema is documented in README.md ("Manifest").
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson
from anyio.streams.memory import MemoryObjectReceiveStream

STATUSES = ("SUCCEED", "FAILED", "ERROR", "TIMEOUT", "INVALID")


@dataclass(frozen=True, slots=True)
class SavedFile:
    """A result file on disk: its path, size and SHA-256."""

    path: str
    bytes: int
    sha256: str


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
            "files": {
                kind: {"path": f.path, "bytes": f.bytes, "sha256": f.sha256}
                for kind, f in self.files.items()
            },
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
    """What the manifest received, for the run's summary and exit code."""

    statuses: Counter[str] = field(default_factory=Counter)
    files: int = 0
    bytes: int = 0

    def add(self, result: JobResult) -> None:
        """Count one result."""
        self.statuses[result.status] += 1
        self.files += len(result.files)
        self.bytes += sum(f.bytes for f in result.files.values())

    @property
    def all_succeeded(self) -> bool:
        """Whether every job succeeded (and there was at least none that did not)."""
        return set(self.statuses) <= {"SUCCEED"}


def open_manifest(path: Path | None) -> IO[bytes]:
    """The manifest opened for appending; None means stdout."""
    if path is None:
        return sys.stdout.buffer
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


async def write_all(stream: IO[bytes], results: MemoryObjectReceiveStream[JobResult]) -> Tally:
    """Write every result received until all senders close; return the tally."""
    tally = Tally()
    async with results:
        async for result in results:
            stream.write(result.to_json())
            stream.flush()
            tally.add(result)
    return tally
