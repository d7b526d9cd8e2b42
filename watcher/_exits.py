"""Every exception a command can see, mapped to one message and one exit code: the only table.

`outcome(exc)` answers for any exception, an exception group from a task group included:

    BrokenPipeError (stdout closed)   quiet, PIPE_CLOSED (141, as a process killed by SIGPIPE)
    KeyboardInterrupt                 "interrupted", 130
    AuthError                         "authentication failed: ...", 2
    OutageError                       "... unreachable ...", 3
    NoJobsError                       "warning: ...", 4
    LedgerError, ConfigError, other   "error: ...", 2
      WatcherErrors, OSError
    anything else                     "internal error: ... (WATCHER_DEBUG=1 shows the traceback)", 2

A group maps to its most serious cause (`causes`: a BrokenResourceError beside another error is
that error's echo): an unexpected exception beside expected ones is never
hidden (it is an internal error, even beside a closed stdout), a closed stdout beside expected
errors stays quiet, and otherwise the first expected error speaks. `unwrap(group)` is the
library's view of the same rule: the group's one WatcherError when every member is one, else the
group itself.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from watcher._errors import (
    AuthError,
    ConfigError,
    Exit,
    LedgerError,
    NoJobsError,
    OutageError,
    TransportError,
    WatcherError,
    causes,
)

# Not in `Exit`: the code a shell shows for a process SIGPIPE killed (128 + 13). cat, grep and jq
# die of SIGPIPE, so `set -o pipefail` scripts see 141 from them too; 0 would claim a run that
# was cut short had finished.
PIPE_CLOSED = 141
# A bug of the watcher's: 2 like every other "nothing usable was done", said as an internal error.
INTERNAL = int(Exit.USAGE)
# Every code a command may return (README's table).
CODES = frozenset({*map(int, Exit), PIPE_CLOSED, INTERNAL})
DEBUG = "WATCHER_DEBUG"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command says on stderr (None: nothing) and the code it exits with."""

    code: int
    message: str | None
    internal: bool = False


def _auth(exc: BaseException) -> str:
    return (
        f"authentication failed: {exc} (request id {getattr(exc, 'request_id', None)}). "
        "Jobs not final were not written to the manifest; rerun once the credentials work."
    )


def _transport(exc: BaseException) -> str:
    return f"cannot reach the API: {exc} (check --endpoint / --region and the network)"


def _os_error(exc: BaseException) -> str:
    filename, strerror = getattr(exc, "filename", None), getattr(exc, "strerror", None)
    where = f"{filename}: " if filename else ""
    return f"error: {where}{strerror or exc}"


def _said(prefix: str) -> Callable[[BaseException], str]:
    return lambda exc: f"{prefix}: {exc}"


# (type, exit code, message), most specific first; the first matching row speaks. Join here.
TABLE: tuple[tuple[type[BaseException], int, Callable[[BaseException], str | None]], ...] = (
    (BrokenPipeError, PIPE_CLOSED, lambda exc: None),
    (KeyboardInterrupt, Exit.INTERRUPTED, lambda exc: "interrupted"),
    (AuthError, Exit.USAGE, _auth),
    (OutageError, Exit.OUTAGE, _said("error")),
    (NoJobsError, Exit.NO_JOBS, _said("warning")),
    (LedgerError, Exit.USAGE, _said("error")),
    (ConfigError, Exit.USAGE, _said("error")),
    (TransportError, Exit.USAGE, _transport),
    (WatcherError, Exit.USAGE, _said("error")),
    (OSError, Exit.USAGE, _os_error),
)


def _pipe_closed(exc: BaseException) -> bool:
    """A write to a closed stdout, however a layer below wrapped it (`raise X from exc`)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BrokenPipeError):
            return True
        seen = seen.__cause__
    return False


def _row(exc: BaseException) -> Outcome | None:
    if _pipe_closed(exc):
        return Outcome(PIPE_CLOSED, None)
    for kind, code, message in TABLE:
        if isinstance(exc, kind):
            return Outcome(int(code), message(exc))
    return None


def outcome(exc: BaseException) -> Outcome:
    """The message and exit code for `exc`, a group included (see the module docstring)."""
    found = [(_row(leaf), leaf) for leaf in causes(exc)]
    unexpected = [leaf for row, leaf in found if row is None]
    if unexpected:
        names = ", ".join(f"{type(leaf).__name__}: {leaf}" for leaf in unexpected)
        return Outcome(
            INTERNAL,
            f"internal error: {names} (a bug: set {DEBUG}=1 to see the traceback, and report it)",
            internal=True,
        )
    if any(row is not None and row.code == PIPE_CLOSED for row, _ in found):
        return Outcome(PIPE_CLOSED, None)
    for row, _ in found:
        if row is not None:
            return row
    return Outcome(INTERNAL, "internal error: an empty exception group", internal=True)


def quiet_stdout() -> None:
    """After a closed stdout: point it at /dev/null, so the interpreter's last flush is silent."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    if sys.stdout is not sys.__stdout__:
        return  # a test's capture, not the process's stdout
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def report(exc: BaseException, prog: str = "watcher", err: IO[str] | None = None) -> int:
    """Say what `outcome(exc)` says on stderr (with the traceback when WATCHER_DEBUG is set) and
    return its exit code."""
    result = outcome(exc)
    err = err if err is not None else sys.stderr
    if result.message is None:
        quiet_stdout()
        return result.code
    if err is None:  # stderr closed (2>&-): the exit code is all that is left to say it
        return result.code
    try:
        if result.internal and os.environ.get(DEBUG, "").strip() not in ("", "0"):
            traceback.print_exception(exc, file=err)
        print(f"{prog}: {result.message}", file=err, flush=True)
    except (OSError, ValueError):
        pass  # stderr is gone too: the exit code is all that is left to say it
    return result.code
