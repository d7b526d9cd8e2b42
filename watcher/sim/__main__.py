"""`python -m watcher.sim`: run the simulator, the same as `watcher sim`. An entry point like
`watcher/__main__.py`, so it sits above the commands (`watcher.cli`), which the simulator's own
modules never import."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from watcher.cli import main as watcher_main

PROG = "watcher sim"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m watcher.sim [flags]`: `watcher sim [flags]`, its errors named `watcher sim:`."""
    words = sys.argv[1:] if argv is None else argv
    return watcher_main(["sim", *words], prog=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
