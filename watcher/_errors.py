"""The exception tree. Foreign errors (aiohttp, OSError) are translated where they occur, once.

    WatcherError
    ├── ConfigError        bad flags, environment or credentials: exit 2 before any work
    ├── InputError         one bad input line; becomes an INVALID manifest line, the run goes on
    ├── ApiError           the API answered with an error (status, code, message, request id)
    │   ├── AuthError      401 APIGW.0301 or MSS.000000004: the whole run stops, exit 2
    │   └── ThrottledError 429 APIGW.0308: wait, then try again
    ├── TransportError     no usable answer: connection refused or reset, timeout, bad body
    ├── DownloadError      a result file could not be saved (link expired, short body, disk)
    ├── LedgerError        the manifest or --out cannot be used (locked by another run, gone,
    │                      read-only, full, a file where a folder should be): exit 2
    ├── OutageError        the API or storage stayed unreachable past --outage-timeout: exit 3
    └── NoJobsError        the input held no job at all: exit 4

`transient` says whether trying again later may succeed. Messages never contain credentials.
`Exit` lists every exit code a command returns; the CLI maps errors to them in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import IntEnum

import anyio


class Exit(IntEnum):
    """The exit codes of every command (README's table says the same)."""

    OK = 0  # every input job's counting line is SUCCEED, its files intact
    JOBS_FAILED = 1  # some input job ended otherwise (FAILED, ERROR, TIMEOUT, INVALID)
    USAGE = 2  # usage, configuration, authentication, or the manifest / --out unusable
    OUTAGE = 3  # the API or storage stayed unreachable past --outage-timeout
    NO_JOBS = 4  # the input held no job at all
    INTERRUPTED = 130  # SIGINT / SIGTERM


class WatcherError(Exception):
    """Base of every error the watcher raises on purpose."""

    transient = False


class ConfigError(WatcherError):
    """Flags, environment or credentials are unusable; nothing has been done yet."""


class InputError(WatcherError):
    """One input line is unusable; `line` is its 1-based number in `source`."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source = source
        self.line = line
        self.reason = message


class ApiError(WatcherError):
    """The API answered with an error body (or a 200 that carries one)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id

    @property
    def transient(self) -> bool:  # type: ignore[override]
        """5xx, 429 and an error body in a 200 (no job state: ask again) may pass; 4xx will not."""
        return self.status >= 500 or self.status in (200, 429)


class AuthError(ApiError):
    """Credentials were refused; retrying would only lock the key (5 failures: 5 minutes)."""


class ThrottledError(ApiError):
    """The tenant's rate limit was hit; `retry_after` is the server's hint in seconds, if any."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str | None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, message, request_id)
        self.retry_after = retry_after


class TransportError(WatcherError):
    """The request got no usable answer; trying again may succeed."""

    transient = True


class DownloadError(WatcherError):
    """A result file could not be saved. `expired` means a fresh link may succeed; `code` is
    what the manifest says (DOWNLOAD_FAILED, or BAD_AUDIO for a file that is not audio)."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        expired: bool = False,
        code: str = "DOWNLOAD_FAILED",
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.expired = expired
        self.code = code


class LedgerError(WatcherError):
    """The manifest or the output folder cannot be used; the message names the path and the
    OS's reason. Nothing already recorded is lost; a rerun resumes."""


class OutageError(WatcherError):
    """`service` ("the API", "storage") gave no answer to anyone for longer than the outage
    timeout; `since` is when it went down (epoch seconds). Unfinished jobs are not written."""

    def __init__(self, service: str, since: float, message: str) -> None:
        super().__init__(message)
        self.service = service
        self.since = since


class NoJobsError(WatcherError):
    """The input held no job at all (an empty file, or a submitter that printed nothing)."""


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside `exc`, groups flattened (itself when it is no group)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


# A task sending to (or reading from) a stream whose other end died of its own error: an echo of
# that error, not a second one. Only alone is it an error of its own.
ECHOES = (anyio.BrokenResourceError, anyio.ClosedResourceError)


def causes(exc: BaseException) -> list[BaseException]:
    """The leaves of `exc` that are causes: echoes left out when anything else is there."""
    found = list(leaves(exc))
    real = [leaf for leaf in found if not isinstance(leaf, ECHOES)]
    return real or found


def unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The group's one WatcherError (the first) when every member is a WatcherError, so library
    callers can `except AuthError`; else the group, so nothing unexpected is hidden."""
    members = causes(group)
    if members and all(isinstance(m, WatcherError) for m in members):
        return members[0]
    return group
