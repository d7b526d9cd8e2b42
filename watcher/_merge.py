"""`watcher merge`: the manifests of N shards (or of several runs) as one, one line per job.

The manifests are read by the ledger (`ledger.py`) and its one rule picks each job's line: the
latest `finished_at` wins, and on a tie (or when neither has a time) the one read later, so the
newest answer counts, whatever it says. `INVALID` lines without a job id are kept one per input
location (`source`, `line`): every shard reports the same bad input line. Output lines keep the
order in which their job first appeared. Damaged lines are skipped with a warning, as `watcher
report` does. File paths are rewritten relative to the output's folder (absolute on stdout), so
the merged manifest resumes wherever it is put. The command (`watcher._commands.merge`) checks
the inputs and prints the counts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from watcher._errors import LedgerError
from watcher._ledger import BadLine, Ledger, Line, read_manifest
from watcher._manifest import JobResult, os_reason


@dataclass(frozen=True, slots=True)
class Merged:
    """The winning record of each job, in order of first appearance, and what was dropped."""

    records: tuple[JobResult, ...]
    read: int
    superseded: int
    unreadable: int = 0


def merge(entries: Iterable[Line | BadLine]) -> Merged:
    """One record per job from manifest lines read in order (see the module's rule)."""
    ledger = Ledger.of(entries)
    records = tuple(line.result for line in ledger.lines.values())
    return Merged(records, ledger.read, ledger.superseded, len(ledger.bad))


def read_all(paths: Iterable[str], warn: Callable[[str], None]) -> Iterator[Line | BadLine]:
    """The lines of each manifest in turn; `warn` hears of each damaged line as it is met."""
    for path in paths:
        for item in read_manifest(path):
            if isinstance(item, BadLine):
                warn(str(item))
            yield item


def write_records(stream: IO[bytes], records: Iterable[JobResult], base: Path | None) -> None:
    """The records as manifest lines, paths relative to `base` (None: absolute)."""
    for record in records:
        stream.write(record.to_json(base))


def write_file(path: Path, records: Iterable[JobResult]) -> None:
    """Replace `path` with the records, atomically: readers see the old file or the whole new one.

    So `-o` may name one of the inputs. LedgerError names the path and the OS's reason.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise LedgerError(f"-o {path}: cannot write there: {os_reason(exc)}") from exc
    try:
        with os.fdopen(fd, "wb") as stream:
            write_records(stream, records, path.parent.absolute())
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise LedgerError(f"-o {path}: cannot write it: {os_reason(exc)}") from exc
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
