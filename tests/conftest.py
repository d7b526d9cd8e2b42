"""Shared fixtures: a clean environment for every test, a running simulator on 127.0.0.1 and a
signer for requests to it. Helpers and constants live in helpers.py; import them from there."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import structlog
from helpers import (
    SIM_FAST,
    TEST_AK,
    TEST_PROJECT_ID,
    TEST_SK,
    ApiSigner,
    SimFactory,
    clean_env,
    login,
)

from watcher._auth import AkSk
from watcher._inputs import Job
from watcher.sim import SimConfig, SimThread

# Re-exported for test files that still import them from here (new ones use helpers).
__all__ = ["FAST", "SIM_FAST", "TEST_AK", "TEST_PROJECT_ID", "TEST_SK", "ApiSigner", "SimFactory"]
FAST = SIM_FAST


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test starts without the developer's settings and credentials (no WATCHER_*,
    HUAWEICLOUD_SDK_*, AWS_*, ... variables; HOME is tmp_path/"home", not yet created), so a
    shell never leaks into the suite."""
    clean_env(monkeypatch, tmp_path / "home")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The clean environment plus the test credentials and project, as a user's shell has them;
    the monkeypatch, to set more."""
    login(monkeypatch)
    return monkeypatch


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Undo `watcher run`'s structlog setup after each test: it binds the stderr that pytest's
    capture closes when the test ends."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, as the watcher does."""
    return "asyncio"


@pytest.fixture
def sim_config() -> SimConfig:
    """A fast simulator accepting the test AK/SK for the test project; no job fails."""
    return SimConfig(
        project_id=TEST_PROJECT_ID,
        credentials=AkSk(TEST_AK, TEST_SK),
        time_scale=SIM_FAST,
        fail_percent=0,  # failures have their own tests; here every job succeeds
    )


@pytest.fixture
def sim(sim_config: SimConfig) -> Iterator[SimThread]:
    """A simulator running in a background thread; `.url` and `.sim` while the test runs."""
    with SimThread(sim_config) as running:
        yield running


@pytest.fixture
def sim_factory() -> Iterator[SimFactory]:
    """Start simulators with chosen settings; all are stopped at the end of the test.

    Defaults: the test AK/SK and project, time_scale 0.002, 8 slots, no failures.
    """
    with ExitStack() as stack:

        def start(preload: Iterable[Job] = (), **overrides: Any) -> SimThread:
            settings: dict[str, Any] = {
                "project_id": TEST_PROJECT_ID,
                "credentials": AkSk(TEST_AK, TEST_SK),
                "time_scale": 0.002,
                "slots": 8,
                "fail_percent": 0,
                **overrides,
            }
            return stack.enter_context(SimThread(SimConfig(**settings), preload=preload))

        yield start


@pytest.fixture
def signer() -> ApiSigner:
    """Signs requests with the credentials `sim` accepts."""
    return ApiSigner()
