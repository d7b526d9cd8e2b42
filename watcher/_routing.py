"""Routing: what one reading of a job's status means, whoever read it (a single GET or a list
sweep). The one place that decides it; the poller carries the route out.

    WAITING / PROCESSING        -> PENDING    read again later (by the schedule or by sweeps)
    SUCCEED                     -> DOWNLOAD   the download pool
    SUCCEED, listed, no audio   -> ASK_LINKS  a single GET first, for the links
    FAILED (or a code/message)  -> FAILED     the manifest, with the API's code and message
    FAILED, listed, no code     -> ASK_CODE   one single GET for the code, from spare budget
    any other state             -> UNKNOWN    ERROR UNKNOWN_STATE

Pure: no clock, no I/O; `failure` and `unknown_state` are the error a final line carries.
"""

from __future__ import annotations

from enum import Enum

from watcher._manifest import ErrorInfo
from watcher._parse import JobStatus


class Route(Enum):
    """Where a reading sends its job (see the module docstring)."""

    PENDING = "pending"
    DOWNLOAD = "download"
    ASK_LINKS = "ask links"
    FAILED = "failed"
    ASK_CODE = "ask code"
    UNKNOWN = "unknown"


def route(status: JobStatus, *, listed: bool) -> Route:
    """Where `status` sends its job; `listed`: it came from a list page (which carries no
    error code and may lack the audio link) rather than from the job's own GET."""
    if not status.final:
        return Route.PENDING
    if status.failed:
        # The list gives only `fail_msg`, no code: the job itself is asked, from spare budget.
        return Route.ASK_CODE if listed and not status.code else Route.FAILED
    if status.state == "SUCCEED":
        return Route.ASK_LINKS if listed and "audio" not in status.links else Route.DOWNLOAD
    return Route.UNKNOWN


def failure(status: JobStatus, fallback: str | None = None) -> ErrorInfo:
    """The error of a FAILED job's line: the API's code (FAILED when it gave none) and message
    (`fallback`, e.g. the list's `fail_msg`, when this answer has none)."""
    message = status.message or fallback or "the job failed"
    return ErrorInfo(status.code or "FAILED", message, status.request_id)


def unknown_state(status: JobStatus) -> ErrorInfo:
    """The error of a job the API reported in a state this watcher does not know."""
    message = f"the API reported state {status.state!r}"
    return ErrorInfo("UNKNOWN_STATE", message, status.request_id)
