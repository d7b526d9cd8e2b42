"""watcher: watch batches of Huawei Cloud MetaStudio asynchronous TTS jobs.

Job ids go in (a file, or stdin as a submitter prints them); every job is polled under one
shared rate limit at the documented 3-second cadence; finished jobs' audio and subtitle files
are saved; one JSONL manifest line is written per job. As a library:

    from watcher import ApiConfig, AkSk, RunConfig, Watcher

    config = RunConfig(ApiConfig(endpoint, project_id, AkSk(ak, sk)), out_dir, manifest_path)
    async with Watcher(config) as w:
        async for result in w.watch(job_ids):
            print(result.job_id, result.status, result.files)

`__all__` is the library's whole surface: what builds a config, runs a `Watcher`, follows it,
reads its results and catches its errors. Every other module is private (`watcher._name`) and
may change in any release. The names are loaded when first used, so `import watcher` (and with it
`watcher.cli` and `watcher.sim`) reads only the version until the engine is asked for.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from watcher._version import __version__

if TYPE_CHECKING:
    from watcher._auth import AkSk, Token
    from watcher._bucket import BucketUrl
    from watcher._config import ApiConfig, DownloadPolicy, PollPolicy, RunConfig
    from watcher._engine import Hooks, Summary
    from watcher._errors import (
        ApiError,
        AuthError,
        ConfigError,
        DownloadError,
        InputError,
        LedgerError,
        OutageError,
        ThrottledError,
        TransportError,
        WatcherError,
    )
    from watcher._inputs import Job
    from watcher._manifest import ErrorInfo, JobResult, SavedFile
    from watcher._progress import Snapshot
    from watcher._retry import RetryPolicy
    from watcher._shard import Shard
    from watcher._watch import Watcher

__all__ = [
    "AkSk",
    "ApiConfig",
    "ApiError",
    "AuthError",
    "BucketUrl",
    "ConfigError",
    "DownloadError",
    "DownloadPolicy",
    "ErrorInfo",
    "Hooks",
    "InputError",
    "Job",
    "JobResult",
    "LedgerError",
    "OutageError",
    "PollPolicy",
    "RetryPolicy",
    "RunConfig",
    "SavedFile",
    "Shard",
    "Snapshot",
    "Summary",
    "ThrottledError",
    "Token",
    "TransportError",
    "Watcher",
    "WatcherError",
    "__version__",
]

# The private module each public name lives in (the same as the imports above, for type
# checkers, which read those; a test holds the two and `__all__` to one list).
_HOMES = {
    "AkSk": "watcher._auth",
    "Token": "watcher._auth",
    "BucketUrl": "watcher._bucket",
    "ApiConfig": "watcher._config",
    "DownloadPolicy": "watcher._config",
    "PollPolicy": "watcher._config",
    "RunConfig": "watcher._config",
    "ApiError": "watcher._errors",
    "AuthError": "watcher._errors",
    "ConfigError": "watcher._errors",
    "DownloadError": "watcher._errors",
    "InputError": "watcher._errors",
    "LedgerError": "watcher._errors",
    "OutageError": "watcher._errors",
    "ThrottledError": "watcher._errors",
    "TransportError": "watcher._errors",
    "WatcherError": "watcher._errors",
    "Job": "watcher._inputs",
    "ErrorInfo": "watcher._manifest",
    "JobResult": "watcher._manifest",
    "SavedFile": "watcher._manifest",
    "Snapshot": "watcher._progress",
    "RetryPolicy": "watcher._retry",
    "Shard": "watcher._shard",
    "Hooks": "watcher._engine",
    "Summary": "watcher._engine",
    "Watcher": "watcher._watch",
}

if not TYPE_CHECKING:  # type checkers see the imports above, not this (nor any other name)

    def __getattr__(name: str) -> object:
        """A public name, imported from its module the first time it is asked for (PEP 562)."""
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'watcher' has no attribute {name!r}")
        value = getattr(import_module(home), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
