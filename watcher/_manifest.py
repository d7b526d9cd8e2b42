"""The manifest: one JSON line per input job, written once, when the job is final.

This module is the writing half of the ledger (`ledger.py` reads it back). One task owns the file
(`write_all`); everything else sends it `JobResult`s through a stream. Lines are only ever
appended, flushed and fsynced, so `tail -f manifest.jsonl | jq` follows a run and a crash loses
at most the line being written, which the next run cuts off.

Lines carry `"v": 2`: their file paths are relative to the manifest's own folder (absolute when
the manifest goes to stdout), so the batch reads the same from any working directory. Each saved
file's size and `mtime_ns` are recorded for the cheap resume check. The schema is documented in
README.md ("Manifest").
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.to_thread
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream

from watcher._errors import InputError, LedgerError
from watcher._inputs import Job

STATUSES = ("SUCCEED", "FAILED", "ERROR", "TIMEOUT", "INVALID")
VERSION = 2  # lines without "v" are version 1: paths relative to that run's cwd, or absolute
MAX_BATCH = 512


def os_reason(exc: OSError) -> str:
    """The OS's reason for `exc`, in words (`No space left on device`)."""
    return exc.strerror or str(exc)


@dataclass(frozen=True, slots=True)
class SavedFile:
    """A result file on disk: its path, size and SHA-256, and its mtime once recorded.

    In memory `path` is usable as it is (relative to the current directory, or absolute); the
    manifest stores it relative to its own folder.
    """

    path: str
    bytes: int
    sha256: str
    duration_s: float | None = None
    mtime_ns: int | None = None

    def to_dict(self, base: Path | None = None) -> dict[str, Any]:
        """The file's manifest entry, its path relative to `base` (None: absolute)."""
        where = os.path.abspath(self.path)
        if base is not None:
            where = os.path.relpath(where, base)
        entry: dict[str, Any] = {"path": where, "bytes": self.bytes, "sha256": self.sha256}
        if self.duration_s is not None:
            entry["duration_s"] = round(self.duration_s, 3)
        if self.mtime_ns is not None:
            entry["mtime_ns"] = self.mtime_ns
        return entry

    def stamped(self) -> SavedFile:
        """This file with the `mtime_ns` it has on disk (unchanged when it cannot be read or its
        size is not the recorded one: the resume check will then find it wanting)."""
        if self.mtime_ns is not None:
            return self
        try:
            info = os.stat(self.path)
        except OSError:
            return self
        return replace(self, mtime_ns=info.st_mtime_ns) if info.st_size == self.bytes else self


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a job did not succeed."""

    code: str
    message: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """What the watch saw of a job by the time it was final, frozen: all its manifest line
    needs beyond the outcome. The poller takes it when the job leaves its hands (a download
    worker gets this, never the poller's live record). `started`, `final`: monotonic (the
    first reading, else the admission; when the final state was seen); `final_at`: wall clock."""

    job: Job
    state: str | None
    polls: int
    first_poll_at: datetime | None
    started: float
    final: float
    final_at: datetime

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.job.job_id


@dataclass(frozen=True, slots=True)
class JobResult:
    """The final word on one job: one manifest line, written and read back as this record.
    Every line a run writes is built here: `of` (a watched job) and `invalid` (a bad input line).

    `finished_at`: when the final state was seen; `saved_at`: when its files were saved.
    """

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
    saved_at: datetime | None = None

    @classmethod
    def of(
        cls,
        seen: JobSnapshot,
        status: str,
        *,
        files: Mapping[str, SavedFile] | None = None,
        error: ErrorInfo | None = None,
        saved_at: datetime | None = None,
    ) -> JobResult:
        """The line of a watched job final as `seen`, its files saved at `saved_at` (wall
        clock), if any."""
        return cls(
            job_id=seen.job_id,
            status=status,
            state=seen.state,
            files=files or {},
            polls=seen.polls,
            first_poll_at=seen.first_poll_at,
            finished_at=seen.final_at,
            elapsed_s=seen.final - seen.started,
            error=error,
            meta=seen.job.meta,
            saved_at=saved_at,
        )

    @classmethod
    def invalid(cls, bad: InputError) -> JobResult:
        """The line of an input line that is not a job."""
        error = ErrorInfo("INVALID_INPUT", str(bad))
        return cls(None, "INVALID", error=error, source=bad.source, line=bad.line)

    def to_dict(self, base: Path | None = None) -> dict[str, Any]:
        """The manifest record, file paths relative to `base` (None: absolute)."""
        record: dict[str, Any] = {
            "v": VERSION,
            "job_id": self.job_id,
            "status": self.status,
            "state": self.state,
            "files": {kind: f.to_dict(base) for kind, f in self.files.items()},
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
        if self.saved_at is not None:
            record["saved_at"] = self.saved_at
        if self.status == "INVALID":
            record["source"] = self.source
            record["line"] = self.line
        return record

    def to_json(self, base: Path | None = None) -> bytes:
        """The manifest line, newline included (paths as in `to_dict`)."""
        option = orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z
        return orjson.dumps(self.to_dict(base), option=option)

    def stamped(self) -> JobResult:
        """This result with every file's `mtime_ns` read from disk (blocking)."""
        if all(f.mtime_ns is not None for f in self.files.values()):
            return self
        return replace(self, files={kind: f.stamped() for kind, f in self.files.items()})


@dataclass(slots=True)
class Tally:
    """What the manifest received, for the run's summary and exit code: counts, the latency
    figures, and per (error code, message) a count and the first few job ids."""

    statuses: Counter[str] = field(default_factory=Counter)
    files: int = 0
    bytes: int = 0
    elapsed: list[float] = field(default_factory=list)
    polls: list[int] = field(default_factory=list)
    failures: dict[tuple[str, str], tuple[int, list[str]]] = field(default_factory=dict)

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
            key = (result.error.code, result.error.message)
            count, examples = self.failures.get(key, (0, []))
            if len(examples) < 3:
                examples.append(label)
            self.failures[key] = (count + 1, examples)

    @property
    def all_succeeded(self) -> bool:
        """Whether no job ended otherwise than SUCCEED (true for an empty run)."""
        return set(self.statuses) <= {"SUCCEED"}


class ManifestFile:
    """The manifest opened for appending (None: stdout), and watched while it is written.

    Before each batch the open file is compared with what its path names now (device and
    inode): a manifest deleted, moved or replaced during the run is a LedgerError, since lines
    written to it would be lost. Every OS error is a LedgerError naming the path and the reason.
    """

    __slots__ = ("_identity", "_stream", "base", "path", "written")

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.written = 0
        self.base = None if path is None else path.parent.absolute()
        if path is None:
            self._stream: IO[bytes] = sys.stdout.buffer
            self._identity: tuple[int, int] | None = None
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = path.open("ab")
        except OSError as exc:
            raise LedgerError(f"manifest {path}: cannot open it: {os_reason(exc)}") from exc
        info = os.fstat(self._stream.fileno())
        self._identity = (info.st_dev, info.st_ino)

    def check(self, pending: int = 0) -> None:
        """LedgerError when the path no longer names the file being written (deleted, moved or
        replaced): its lines of this run, and the `pending` results, would be lost."""
        if self.path is None or self._identity is None:
            return
        try:
            info = os.stat(self.path)
            what = None if (info.st_dev, info.st_ino) == self._identity else "replaced"
        except FileNotFoundError:
            what = "deleted or moved"
        if what is not None:
            raise LedgerError(
                f"manifest {self.path} was {what} while the run went on: the {self.written} "
                f"lines this run wrote went with the old file and {pending} finished results "
                "were not recorded (nor any job still under way); run the same command again "
                "to resume"
            )

    def append(self, results: list[JobResult], durable: bool) -> bytes:
        """Write `results` as lines, flushed and (when `durable`) fsynced; blocking. Returns
        the bytes written."""
        self.check(len(results))
        data = b"".join(result.stamped().to_json(self.base) for result in results)
        try:
            self._stream.write(data)
            self._stream.flush()
            if durable:
                os.fsync(self._stream.fileno())
        except OSError as exc:
            if isinstance(exc, BrokenPipeError) and self.path is None:
                raise  # `--manifest - | head`: the reader is gone; the command stops quietly
            raise LedgerError(
                f"manifest {self.path or '<stdout>'}: cannot write: {os_reason(exc)}; "
                f"{len(results)} finished results were not recorded (lines already written "
                "are kept); run the same command again to resume"
            ) from exc
        self.written += len(results)
        return data

    def close(self) -> None:
        """Close the file (stdout is left open); never raises."""
        if self.path is not None:
            with contextlib.suppress(OSError):  # a full disk: append has already said so
                self._stream.close()


async def write_all(
    manifest: ManifestFile,
    results: MemoryObjectReceiveStream[JobResult],
    tally: Tally,
    *,
    on_written: Callable[[JobResult], Awaitable[None]] | None = None,
    mirror: Callable[[bytes], Awaitable[None]] | None = None,
) -> None:
    """Write every result received until all senders close, counting each in `tally` and then
    telling `on_written` (if given) once its line is on disk. `mirror`, if given, gets each
    batch's bytes once they are on disk, before anyone is told (the bucket's ledger segments).

    Lines are appended, flushed and (to a file) fsynced before the next batch; a batch is
    whatever has queued up meanwhile (group commit), so a busy run pays one fsync per batch
    rather than per line, and no line waits for more than one fsync. Writes run in a worker
    thread and are never abandoned half-way, even on cancellation. LedgerError when the
    manifest cannot be written or is no longer the file it was (checked before each batch and
    once more at the end, so a manifest deleted after its last line is not a silent success).
    """
    durable = manifest.path is not None
    async with results:
        async for first in results:
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(results.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            data = await anyio.to_thread.run_sync(manifest.append, batch, durable)
            if mirror is not None:
                await mirror(data)
            for result in batch:
                tally.add(result)
                if on_written is not None:
                    await on_written(result)
    await anyio.to_thread.run_sync(manifest.check)
