"""Shared fixtures: a running simulator on 127.0.0.1 and a signer for requests to it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import pytest
import structlog

from watcher.auth import AkSk, sign
from watcher.inputs import Job
from watcher.sim import SimConfig, SimThread

# Shared with the watcher's own tests (test_watch.py, test_cli.py), which use the same values.
TEST_AK = "TESTAK0000000000WTCH"
TEST_SK = "test-sk-for-watch-tests-000000000000000"
TEST_PROJECT_ID = "proj0123"
FAST = 0.001  # time_scale: a 100-character job takes 7 ms


@dataclass(frozen=True, slots=True)
class ApiSigner:
    """Builds the headers the official SDK would send for one API request."""

    ak: str = TEST_AK
    sk: str = field(default=TEST_SK, repr=False)
    project_id: str = TEST_PROJECT_ID
    security_token: str | None = field(default=None, repr=False)

    def headers(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        *,
        now: datetime | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Signed headers for `method url` (query included) with `body`; `extra` are signed too."""
        parts = urlsplit(url)
        unsigned = {
            "Host": parts.netloc,
            "Content-Type": "application/json",
            "X-Project-Id": self.project_id,
            **(extra or {}),
        }
        return sign(
            AkSk(self.ak, self.sk, self.security_token),
            method,
            parts.path,
            parse_qsl(parts.query, keep_blank_values=True),
            unsigned,
            body,
            now or datetime.now(UTC),
        )


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
        time_scale=FAST,
        fail_percent=0,  # failures have their own tests; here every job succeeds
    )


@pytest.fixture
def sim(sim_config: SimConfig) -> Iterator[SimThread]:
    """A simulator running in a background thread; `.url` and `.sim` while the test runs."""
    with SimThread(sim_config) as running:
        yield running


class SimFactory(Protocol):
    """Starts a simulator: the test defaults, `preload`ed, with any SimConfig field overridden."""

    def __call__(self, preload: Iterable[Job] = (), **overrides: Any) -> SimThread: ...


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
