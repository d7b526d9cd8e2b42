"""The one table from exceptions to messages and exit codes, groups included."""

from __future__ import annotations

import io

import anyio
import pytest

from watcher._errors import (
    AuthError,
    ConfigError,
    Exit,
    LedgerError,
    NoJobsError,
    OutageError,
    TransportError,
    unwrap,
)
from watcher._exits import CODES, PIPE_CLOSED, outcome, report


def _auth() -> AuthError:
    return AuthError(401, "APIGW.0301", "bad signature", "req-1")


@pytest.mark.parametrize(
    ("exc", "code", "says"),
    [
        (_auth(), Exit.USAGE, "authentication failed"),
        (ConfigError("--rate: nope"), Exit.USAGE, "error: --rate: nope"),
        (LedgerError("manifest locked"), Exit.USAGE, "error: manifest locked"),
        (OutageError("the API", 0.0, "the API is unreachable"), Exit.OUTAGE, "unreachable"),
        (NoJobsError("no job"), Exit.NO_JOBS, "warning: no job"),
        (TransportError("POST: refused"), Exit.USAGE, "cannot reach the API"),
        (KeyboardInterrupt(), Exit.INTERRUPTED, "interrupted"),
        (PermissionError(13, "Permission denied", "/x"), Exit.USAGE, "/x: Permission denied"),
    ],
)
def test_each_expected_error_has_its_code_and_message(
    exc: BaseException, code: int, says: str
) -> None:
    """Every row of the table: the exit code from Exit and a message saying what happened."""
    result = outcome(exc)
    assert result.code == code and result.message is not None and says in result.message
    assert not result.internal


def test_an_unexpected_error_beside_an_expected_one_is_not_hidden() -> None:
    """A TypeError raised next to an AuthError in a task group is an internal error, named."""
    group = ExceptionGroup("tg", [_auth(), ExceptionGroup("inner", [TypeError("oops")])])
    result = outcome(group)
    assert result.internal and result.message is not None
    assert "TypeError: oops" in result.message and "WATCHER_DEBUG=1" in result.message
    assert unwrap(group) is group


def test_a_group_of_expected_errors_speaks_with_the_first() -> None:
    """Only WatcherErrors inside: the first one's code; the library sees it bare."""
    auth = _auth()
    group = ExceptionGroup("tg", [ExceptionGroup("inner", [auth]), ConfigError("x")])
    assert outcome(group).code == Exit.USAGE and "authentication" in str(outcome(group).message)
    assert unwrap(group) is auth


def test_a_closed_stdout_is_quiet_however_it_is_wrapped() -> None:
    """BrokenPipeError, bare, beside another expected error or as the cause of a LedgerError:
    141 and no message; beside an unexpected error, that one is not hidden."""
    try:
        raise LedgerError("manifest -: Broken pipe") from BrokenPipeError(32, "Broken pipe")
    except LedgerError as wrapped:
        ledger = wrapped
    beside = ExceptionGroup("tg", [ConfigError("x"), BrokenPipeError()])
    for exc in (BrokenPipeError(), beside, ledger):
        assert outcome(exc).code == PIPE_CLOSED and outcome(exc).message is None
    assert PIPE_CLOSED in CODES
    assert outcome(ExceptionGroup("tg", [TypeError("x"), BrokenPipeError()])).internal


def test_report_prints_one_line_and_the_traceback_only_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An internal error is one line; WATCHER_DEBUG=1 adds the traceback."""
    monkeypatch.delenv("WATCHER_DEBUG", raising=False)
    err = io.StringIO()
    assert report(ValueError("bad"), err=err) == Exit.USAGE
    assert err.getvalue().count("\n") == 1 and "internal error: ValueError: bad" in err.getvalue()
    monkeypatch.setenv("WATCHER_DEBUG", "1")
    err = io.StringIO()
    try:
        raise ValueError("bad")
    except ValueError as exc:
        report(exc, err=err)
    assert "Traceback" in err.getvalue() and err.getvalue().endswith("report it)\n")


def test_a_broken_stream_beside_its_cause_is_an_echo() -> None:
    """A worker's BrokenResourceError after the writer died of a closed stdout (or of an
    AuthError) is not a second error; alone it is one."""
    piped = ExceptionGroup("tg", [BrokenPipeError(), anyio.BrokenResourceError()])
    assert outcome(piped).code == PIPE_CLOSED
    auth = _auth()
    assert unwrap(ExceptionGroup("tg", [anyio.BrokenResourceError(), auth])) is auth
    assert outcome(ExceptionGroup("tg", [anyio.BrokenResourceError()])).internal
