"""watcher: watch batches of Huawei Cloud MetaStudio asynchronous TTS jobs.

Job ids go in (a file, or stdin as a submitter prints them); every job is polled under one
shared rate limit at the documented 3-second cadence; finished jobs' audio and subtitle files
are saved; one JSONL manifest line is written per job. As a library:

    from watcher import ApiConfig, AkSk, RunConfig, Watcher

    config = RunConfig(ApiConfig(endpoint, project_id, AkSk(ak, sk)), out_dir, manifest_path)
    async with Watcher(config) as w:
        async for result in w.watch(job_ids):
            print(result.job_id, result.status, result.files)
"""

from __future__ import annotations

from watcher._auth import AkSk, Token
from watcher._config import ApiConfig, DownloadPolicy, PollPolicy, RunConfig
from watcher._errors import (
    ApiError,
    AuthError,
    ConfigError,
    DownloadError,
    InputError,
    ThrottledError,
    TransportError,
    WatcherError,
)
from watcher._inputs import Job
from watcher._manifest import ErrorInfo, JobResult, SavedFile
from watcher._retry import RetryPolicy
from watcher._version import __version__
from watcher._watch import Hooks, Summary, Watcher

__all__ = [
    "AkSk",
    "ApiConfig",
    "ApiError",
    "AuthError",
    "ConfigError",
    "DownloadError",
    "DownloadPolicy",
    "ErrorInfo",
    "Hooks",
    "InputError",
    "Job",
    "JobResult",
    "PollPolicy",
    "RetryPolicy",
    "RunConfig",
    "SavedFile",
    "Summary",
    "ThrottledError",
    "Token",
    "TransportError",
    "Watcher",
    "WatcherError",
    "__version__",
]
