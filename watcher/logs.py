"""Logging through structlog, to stderr: readable on a terminal, JSON lines (orjson) otherwise.

Every event passes `Redact`, which masks the run's secrets wherever they appear, so no credential
reaches a log line even through an exception message or a URL.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal

import orjson
import structlog

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


def configure(
    *,
    level: str = "info",
    fmt: Literal["auto", "console", "json"] = "auto",
    secrets: Iterable[str] = (),
) -> None:
    """Set up structlog for this process: level, renderer, redaction."""
    json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
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
        factory = structlog.PrintLoggerFactory(sys.stderr)
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
