"""Helpers shared by the tests: the test credentials, one fake clock, a clean environment, the
simulator factory's type, and fast configs for runs of the whole watcher against the simulator.

Tests import these from here; conftest.py holds only fixtures (and re-exports the constants it
used to define, for test files written before they moved).
"""

from __future__ import annotations

import asyncio
import os
import selectors
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit

import anyio
import anyio.lowlevel
import orjson
import pytest

from watcher._auth import AkSk, sign
from watcher._config import ApiConfig, DownloadPolicy, PollPolicy, RunConfig
from watcher._engine import Summary, watch
from watcher._errors import InputError
from watcher._inputs import Job
from watcher._retry import RetryPolicy
from watcher.sim import SimThread

# Shared with the watcher's own tests (test_watch.py, test_cli.py), which use the same values.
TEST_AK = "TESTAK0000000000WTCH"
TEST_SK = "test-sk-for-watch-tests-000000000000000"
TEST_PROJECT_ID = "proj0123"
T = TypeVar("T")
SIM_FAST = 0.001  # a simulator time_scale: a 100-character job takes 7 ms

# Every variable the watcher (or a bucket client it drives) reads a setting or a credential from.
SETTING_PREFIXES = ("WATCHER_", "HUAWEICLOUD_SDK_", "CLOUD_SDK_", "METASTUDIO_", "AWS_", "OBS_")


class FakeClock:
    """The tests' one fake monotonic clock: time moves only when a test, a `sleep`, or an event
    loop from `VirtualTimeLoop` moves it. `slept` records every `sleep`, in order."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time on by `seconds`."""
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """Pass `seconds` at once (recorded in `slept`), then let other tasks run."""
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()


class _JumpSelector(selectors.DefaultSelector):
    """A selector that, where the loop would block until its next timer, moves the clock there
    instead: ready I/O is still served, but idle time costs nothing."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only I/O (or another thread) can wake the loop
            return super().select(None)
        self._clock.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose time is `clock`: anyio's sleeps, timeouts and cancel scopes run on
    it, and whenever every task waits, time jumps to the next deadline. So code under test whose
    `clock` is that FakeClock and whose `sleep` is anyio's own runs exactly as it would, with
    no real waiting. For code without real I/O (a fake gate, a fake client)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(_JumpSelector(clock))
        self.clock = clock

    def time(self) -> float:
        return self.clock.now


def virtual_time(clock: FakeClock) -> tuple[str, dict[str, Any]]:
    """An `anyio_backend` value: asyncio on a VirtualTimeLoop whose time is `clock`."""
    return "asyncio", {"loop_factory": lambda: VirtualTimeLoop(clock)}


def run_in_virtual_time(clock: FakeClock, main: Callable[[], Awaitable[T]]) -> T:
    """Run `main` to its end on a VirtualTimeLoop whose time is `clock` (for a test that is not
    itself async, or that needs virtual time in one part only)."""
    return anyio.run(
        main, backend="asyncio", backend_options={"loop_factory": lambda: VirtualTimeLoop(clock)}
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 45.0) -> None:
    """Wait (in real time, polling every 20 ms) for `condition` from another thread or process;
    fail the test naming `what` if it does not hold within `timeout`. For waits on real
    processes only: the timeout is a bound against hanging, never what a test measures."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.02)


def clean_env(monkeypatch: pytest.MonkeyPatch, home: Path) -> pytest.MonkeyPatch:
    """Remove every setting and credential variable (SETTING_PREFIXES) of the developer's shell,
    and point HOME at `home`, so no config or credentials file of theirs is read either."""
    for name in [n for n in os.environ if n.startswith(SETTING_PREFIXES)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    return monkeypatch


def login(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test credentials and project in the environment, as a user's shell would have them."""
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", TEST_AK)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", TEST_SK)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", TEST_PROJECT_ID)


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


class SimFactory(Protocol):
    """Starts a simulator: the test defaults, `preload`ed, with any SimConfig field overridden."""

    def __call__(self, preload: Iterable[Job] = (), **overrides: Any) -> SimThread: ...


QUICK_RETRY = RetryPolicy(attempts=4, base=0.01, cap=0.05)
FAST = PollPolicy(cadence=0.02, rate=2000, retry=QUICK_RETRY, auth_pause=0.01, outage_probe=0.01)
FAST_DOWNLOADS = DownloadPolicy(workers=4, retry=QUICK_RETRY)


def run_config(
    url: str,
    out: Path,
    poll: PollPolicy = FAST,
    download: DownloadPolicy = FAST_DOWNLOADS,
    *,
    retry_failed: bool = False,
    **api: Any,
) -> RunConfig:
    """A fast RunConfig against a test simulator at `url`, writing into `out`."""
    api_config = ApiConfig(url, TEST_PROJECT_ID, AkSk(TEST_AK, TEST_SK), request_timeout=5)
    return RunConfig(
        api=replace(api_config, **api),
        out_dir=out,
        manifest=out / "manifest.jsonl",
        poll=poll,
        download=download,
        retry_failed=retry_failed,
    )


def make_jobs(n: int, prefix: str = "job") -> list[Job]:
    """`n` jobs named prefix-000, prefix-001... with meta {"n": i}."""
    return [Job(f"{prefix}-{i:03d}", {"n": i}) for i in range(n)]


def read_manifest(out: Path) -> list[dict[str, Any]]:
    """The manifest lines in `out`, parsed."""
    return [orjson.loads(line) for line in (out / "manifest.jsonl").read_bytes().splitlines()]


async def _items(*items: Job | InputError) -> AsyncIterator[Job | InputError]:
    for item in items:
        yield item


async def run_jobs(config: RunConfig, *items: Job | InputError) -> Summary:
    """Watch `items` to the end with `config`."""
    return await watch(config, _items(*items))
