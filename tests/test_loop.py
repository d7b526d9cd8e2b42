"""Which event loop `watcher._loop.run` runs on: asyncio's by default, uvloop when
`WATCHER_LOOP=uvloop` asks and it can be had, asyncio's after one warning when it cannot."""

from __future__ import annotations

import asyncio
import importlib.util
from importlib.machinery import ModuleSpec

import pytest
import structlog

from watcher import _loop


async def loop_module(tag: str) -> tuple[str, str]:
    """The module of the running loop's class, and `tag` (proves the arguments get through)."""
    return type(asyncio.get_running_loop()).__module__, tag


def test_no_setting_runs_on_asyncios_loop_and_logs_nothing() -> None:
    """WATCHER_LOOP unset, empty or asyncio: asyncio's own loop, no event logged."""
    for environ in ({}, {"WATCHER_LOOP": ""}, {"WATCHER_LOOP": "asyncio"}):
        with structlog.testing.capture_logs() as logs:
            module, tag = _loop.run(loop_module, "x", environ=environ)
        assert module.startswith("asyncio") and tag == "x", (environ, module)
        assert logs == []


def test_uvloop_when_asked_and_installed() -> None:
    """WATCHER_LOOP=uvloop with uvloop installed: the run is on uvloop's loop, nothing logged."""
    pytest.importorskip("uvloop")
    with structlog.testing.capture_logs() as logs:
        module, _ = _loop.run(loop_module, "x", environ={"WATCHER_LOOP": "UVLoop "})
    assert module.startswith("uvloop"), module
    assert logs == []


def test_uvloop_missing_falls_back_to_asyncio_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvloop asked for but not installed: asyncio's loop, one warning saying so."""
    find_spec = importlib.util.find_spec

    def without_uvloop(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "uvloop" else find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_uvloop)
    with structlog.testing.capture_logs() as logs:
        module, _ = _loop.run(loop_module, "x", environ={"WATCHER_LOOP": "uvloop"})
    assert module.startswith("asyncio"), module
    assert [(e["log_level"], e["reason"]) for e in logs] == [
        ("warning", "uvloop is not installed (pip install uvloop)")
    ]


def test_windows_and_unknown_values_fall_back_to_asyncio_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On Windows uvloop is never tried; a value other than uvloop/asyncio is named in the
    warning; both run on asyncio's loop."""
    assert _loop.uvloop_unavailable({"WATCHER_LOOP": "trio"}) == (
        "WATCHER_LOOP='trio' is not a loop the watcher knows (uvloop or asyncio)"
    )
    with structlog.testing.capture_logs() as logs:
        module, _ = _loop.run(loop_module, "x", environ={"WATCHER_LOOP": "trio"})
    assert module.startswith("asyncio") and len(logs) == 1
    monkeypatch.setattr("sys.platform", "win32")
    assert _loop.uvloop_unavailable({"WATCHER_LOOP": "uvloop"}) == "uvloop does not run on Windows"
    module, _ = _loop.run(loop_module, "x", environ={"WATCHER_LOOP": "uvloop"})
    assert module.startswith("asyncio")
