"""Logging through structlog, to stderr: readable on a terminal, JSON lines (orjson) otherwise.

Every event passes `Redact`, which masks the run's secrets wherever they appear, so no credential
reaches a log line even through an exception message or a URL. On a terminal with a status line,
log lines are written through its `Screen`, so they scroll above the line instead of onto it.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal

import orjson
import structlog

from watcher._progress import Screen

REDACTED = "***"


class Redact:
    """A processor that replaces each secret, wherever it occurs in a string value, with ***."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = tuple(s for s in secrets if s)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        if isinstance(value, BaseException):
            return self._clean(f"{value.__class__.__name__}: {value}")
        return value

    def __call__(
        self, logger: Any, name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if self._secrets:
            for key, value in event.items():
                event[key] = self._clean(value)
        return event


class ScreenLogger:
    """A structlog logger that prints each rendered line through a `Screen`."""

    __slots__ = ("_screen",)

    def __init__(self, screen: Screen, *_name: Any) -> None:
        self._screen = screen

    def msg(self, message: str) -> None:
        """Print one rendered event above the status line."""
        self._screen.write_log(message)

    debug = info = warning = warn = error = critical = exception = fatal = failure = msg


def is_json(fmt: Literal["auto", "console", "json"]) -> bool:
    """Whether logs in format `fmt` are JSON lines: asked for, or `auto` off a terminal."""
    return fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())


def configure(
    *,
    level: str = "info",
    fmt: Literal["auto", "console", "json"] = "auto",
    secrets: Iterable[str] = (),
    screen: Screen | None = None,
) -> None:
    """Set up structlog for this process: level, renderer, redaction.

    With `screen` (a terminal with a status line), console logs are printed through it; JSON
    logs never are, so they stay one JSON object per line.
    """
    json = is_json(fmt)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        Redact(secrets),
    ]
    if json:
        processors.append(structlog.processors.JSONRenderer(serializer=orjson.dumps))
        factory: Any = structlog.BytesLoggerFactory(sys.stderr.buffer)
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
        factory = (
            structlog.PrintLoggerFactory(sys.stderr)
            if screen is None
            else functools.partial(ScreenLogger, screen)
        )
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=factory,
        # Not cached: a process may configure twice (tests, library use) and each run has its
        # own secrets to redact; the lookup costs little at a few events per job.
        cache_logger_on_first_use=False,
    )


class _Stderr:
    """Whatever `sys.stderr` is when a line is written (tests and callers swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text) if sys.stderr is not None else len(text)

    def flush(self) -> None:
        if sys.stderr is not None:
            sys.stderr.flush()


def default_to_stderr() -> None:
    """For library use: unless the application configured structlog, the watcher's events go to
    stderr (structlog's own default is stdout, which may carry a manifest or a pipe's data)."""
    if not structlog.is_configured():
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(_Stderr()))  # type: ignore[arg-type]
