"""`watcher merge MANIFEST... [-o OUT]`: the flags, and the call to the merge in `_merge.py`.

The inputs are checked (each an existing file, `-` at most once) before anything is read; the
output is written whether or not damaged lines were skipped. 0 when every line was readable, 1
when some were skipped; errors are raised for `watcher.cli.main` to report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from watcher import _merge as merging
from watcher._errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """MANIFEST... and -o/--output."""
    parser.add_argument(
        "manifests", nargs="+", metavar="MANIFEST", help="manifests to merge; '-' is stdin"
    )
    parser.add_argument(
        "-o", "--output", type=Path, help="where to write the merged manifest (stdout)"
    )


def _warn(message: str) -> None:
    print(f"watcher: warning: {message}", file=sys.stderr)


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
    merged = merging.merge(merging.read_all(paths, _warn))
    if args.output is None:
        merging.write_records(sys.stdout.buffer, merged.records, None)
        sys.stdout.buffer.flush()
    else:
        merging.write_file(args.output, merged.records)
    skipped = f"; {merged.unreadable} unreadable lines skipped" if merged.unreadable else ""
    print(
        f"watcher merge: read {merged.read} lines from {len(paths)} manifests; "
        f"wrote {len(merged.records)}; {merged.superseded} superseded{skipped}",
        file=sys.stderr,
    )
    return 1 if merged.unreadable else 0
