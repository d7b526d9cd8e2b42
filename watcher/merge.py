"""`watcher merge`: the manifests of N shards (or of several runs) as one, one line per job.

When a job appears on several lines, one line wins: a `SUCCEED` line beats any other; between two
lines that are both `SUCCEED`, or both not, the one with the later `finished_at` wins, and on a tie
(or when neither has a time) the one read later. `INVALID` lines without a job id are kept as they
are, one per input location (`source`, `line`): every shard reports the same bad input line.
Output lines keep the order in which their job first appeared. Damaged lines are skipped with a
warning, as `watcher report` does.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from watcher.errors import ConfigError
from watcher.report import BadLine, Entry, read_manifest, record_key

_OLDEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Merged:
    """The winning record of each job, in order of first appearance, and what was dropped."""

    records: tuple[Mapping[str, Any], ...]
    read: int
    superseded: int
    unreadable: int = 0


def finished_at(record: Mapping[str, Any]) -> datetime:
    """The record's `finished_at` as an aware datetime; the oldest possible when absent or bad.

    Parsed, not compared as text: `...:07Z` and `...:07.5Z` do not sort as strings do.
    """
    value = record.get("finished_at")
    if not isinstance(value, str):
        return _OLDEST
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return _OLDEST
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def rank(record: Mapping[str, Any]) -> tuple[bool, datetime]:
    """How strongly a record claims its job: SUCCEED first, then the latest `finished_at`."""
    return (record.get("status") == "SUCCEED", finished_at(record))


def merge(entries: Iterable[Entry | BadLine]) -> Merged:
    """One record per job from manifest entries read in order (see the module's rules)."""
    winners: dict[Hashable, Mapping[str, Any]] = {}
    read = unreadable = 0
    for entry in entries:
        if isinstance(entry, BadLine):
            unreadable += 1
            continue
        read += 1
        key = record_key(entry.record, (entry.source, entry.line))
        held = winners.get(key)
        if held is None or rank(entry.record) >= rank(held):
            winners[key] = entry.record  # an existing key keeps its place in the order
    return Merged(tuple(winners.values()), read, read - len(winners), unreadable)


def read_all(paths: Iterable[str], warn: Callable[[str], None]) -> Iterable[Entry | BadLine]:
    """The entries of each manifest in turn; `warn` hears of each damaged line as it is met."""
    for path in paths:
        for item in read_manifest(path):
            if isinstance(item, BadLine):
                warn(str(item))
            yield item


def write_records(stream: IO[bytes], records: Iterable[Mapping[str, Any]]) -> None:
    """The records as JSON lines."""
    for record in records:
        stream.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))


def write_file(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Replace `path` with the records, atomically: readers see the old file or the whole new one.

    So `-o` may name one of the inputs.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            write_records(stream, records)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """MANIFEST... and -o/--output."""
    parser.add_argument(
        "manifests", nargs="+", metavar="MANIFEST", help="manifests to merge; '-' is stdin"
    )
    parser.add_argument(
        "-o", "--output", type=Path, help="where to write the merged manifest (stdout)"
    )


def run(args: argparse.Namespace) -> int:
    """Merge, write, and say on stderr how many lines were read, written and superseded.

    0 when every line was readable, 1 when damaged lines were skipped (the output is written
    either way). ConfigError when an input does not exist or `-` is given twice.
    """
    paths: list[str] = args.manifests
    for path in paths:
        if path != "-" and not Path(path).is_file():
            raise ConfigError(f"manifest {path!r}: no such file")
    if paths.count("-") > 1:
        raise ConfigError("'-' (stdin) can be given only once")

    def warn(message: str) -> None:
        print(f"watcher: warning: {message}", file=sys.stderr)

    merged = merge(read_all(paths, warn))
    if args.output is None:
        write_records(sys.stdout.buffer, merged.records)
        sys.stdout.buffer.flush()
    else:
        write_file(args.output, merged.records)
    skipped = f"; {merged.unreadable} unreadable lines skipped" if merged.unreadable else ""
    print(
        f"watcher merge: read {merged.read} lines from {len(paths)} manifests; "
        f"wrote {len(merged.records)}; {merged.superseded} superseded{skipped}",
        file=sys.stderr,
    )
    return 1 if merged.unreadable else 0
