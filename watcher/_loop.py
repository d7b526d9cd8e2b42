"""The event loop a command runs on: asyncio's own, or uvloop when `WATCHER_LOOP=uvloop` asks.

uvloop (libuv under asyncio's API) spends less CPU per request than asyncio's own loop; it has
wheels for Linux and macOS only, so it stays optional: when it is asked for but cannot be had
(not installed, or Windows), the run goes on with asyncio's loop and one warning says why.
`WATCHER_LOOP` unset, empty or `asyncio`: asyncio's loop, nothing logged.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar, TypeVarTuple, Unpack

import anyio
import structlog

log = structlog.get_logger("watcher.loop")

ENV = "WATCHER_LOOP"
T = TypeVar("T")
Args = TypeVarTuple("Args")


def uvloop_unavailable(environ: Mapping[str, str]) -> str | None:
    """Why the loop `environ` asks for cannot be uvloop (None: it is asked for and available,
    or asyncio's loop is asked for, which always is)."""
    wanted = environ.get(ENV, "").strip().lower()
    if wanted in ("", "asyncio"):
        return None
    if wanted != "uvloop":
        return f"{ENV}={wanted!r} is not a loop the watcher knows (uvloop or asyncio)"
    if sys.platform == "win32":
        return "uvloop does not run on Windows"
    if importlib.util.find_spec("uvloop") is None:
        return "uvloop is not installed (pip install uvloop)"
    return None


def run(
    fn: Callable[[Unpack[Args]], Awaitable[T]],
    *args: *Args,
    environ: Mapping[str, str] | None = None,
) -> T:
    """`anyio.run(fn, *args)` on the loop `environ` (default: os.environ) asks for; when
    uvloop is asked for but cannot be had, on asyncio's own loop after a warning saying why."""
    env = os.environ if environ is None else environ
    reason = uvloop_unavailable(env)
    if reason is not None:
        log.warning("using asyncio's event loop", reason=reason)
    elif env.get(ENV, "").strip().lower() == "uvloop":
        uvloop = importlib.import_module("uvloop")  # only here: Windows has none
        options = {"loop_factory": uvloop.new_event_loop}
        return anyio.run(fn, *args, backend="asyncio", backend_options=options)
    return anyio.run(fn, *args, backend="asyncio")
