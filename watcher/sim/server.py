"""Running the simulator: `serve` in an event loop, or `SimThread` beside synchronous code.

Both bind a real TCP port (127.0.0.1 and an OS-chosen port by default) and expose the base URL and
the `Simulator`, whose stats and storage log a test or benchmark can read.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractContextManager, ExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType

import anyio
from aiohttp import web
from anyio.from_thread import start_blocking_portal

from watcher._inputs import Job
from watcher.sim.app import create_app
from watcher.sim.config import SimConfig
from watcher.sim.simulator import Simulator

SHUTDOWN_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class RunningSim:
    """A simulator answering at `url` (scheme, host and port; no trailing slash)."""

    url: str
    sim: Simulator


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def serve(
    config: SimConfig,
    *,
    preload: Iterable[Job] = (),
    host: str = "127.0.0.1",
    port: int = 0,
    sim: Simulator | None = None,
) -> AsyncIterator[RunningSim]:
    """Serve a simulator (a new one from `config`, or `sim`) until the block exits.

    `preload` jobs are added before the port opens. Leaving the block closes the listener and
    waits at most SHUTDOWN_SECONDS for requests in flight.
    """
    sim = sim if sim is not None else Simulator(config)
    sim.preload(preload)
    runner = web.AppRunner(
        create_app(sim), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        yield RunningSim(_url(host, bound_port), sim)
    finally:
        with anyio.move_on_after(SHUTDOWN_SECONDS * 2, shield=True):
            await runner.cleanup()


class SimThread(AbstractContextManager["SimThread"]):
    """`serve` on an event loop in a background thread, for synchronous callers and fixtures.

    `with SimThread(config) as running:` gives `running.url` and `running.sim`; leaving the block
    stops the server and joins its thread (bounded by the server's shutdown bound). Reading
    `sim.stats` and `sim.storage.requests` from the calling thread is safe.
    """

    def __init__(
        self,
        config: SimConfig,
        *,
        preload: Iterable[Job] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        sim: Simulator | None = None,
    ) -> None:
        self._config = config
        self._preload = tuple(preload)
        self._host = host
        self._port = port
        self._given_sim = sim
        self._stack: ExitStack | None = None
        self._running: RunningSim | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = self._running.url if self._running else "stopped"
        return f"SimThread({where})"

    @property
    def url(self) -> str:
        """The base URL; only while running."""
        return self._started().url

    @property
    def sim(self) -> Simulator:
        """The simulator; only while running."""
        return self._started().sim

    def _started(self) -> RunningSim:
        if self._running is None:
            raise RuntimeError("the simulator is not running: use `with SimThread(...)`")
        return self._running

    def __enter__(self) -> SimThread:
        with self._lock:
            if self._stack is not None:
                raise RuntimeError("this SimThread is already running")
            stack = ExitStack()
            try:
                portal = stack.enter_context(start_blocking_portal(backend="asyncio"))
                served = serve(
                    self._config,
                    preload=self._preload,
                    host=self._host,
                    port=self._port,
                    sim=self._given_sim,
                )
                self._running = stack.enter_context(portal.wrap_async_context_manager(served))
            except BaseException:
                stack.close()
                raise
            self._stack = stack
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            stack, self._stack, self._running = self._stack, None, None
        if stack is not None:
            stack.close()
