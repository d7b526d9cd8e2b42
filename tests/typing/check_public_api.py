"""A library user's program, type-checked (never run) by test_public_api.py under mypy --strict.

It builds every kind of config, runs a `Watcher` with hooks, reads results and the summary, and
catches each error a run raises, using nothing but `watcher`'s public names, as README's "As a
library" does. An error mypy reports here is a break in the public API; each `assert_type`
pins what a user's type checker sees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import assert_type

import watcher
from watcher import (
    AkSk,
    ApiConfig,
    ApiError,
    AuthError,
    BucketUrl,
    ConfigError,
    DownloadError,
    DownloadPolicy,
    ErrorInfo,
    Hooks,
    InputError,
    Job,
    JobResult,
    LedgerError,
    OutageError,
    PollPolicy,
    RetryPolicy,
    RunConfig,
    SavedFile,
    Shard,
    Snapshot,
    Summary,
    ThrottledError,
    Token,
    TransportError,
    Watcher,
    WatcherError,
)

assert_type(watcher.__version__, str)


def build_configs(out: Path) -> list[RunConfig]:
    """A config for each way of running: keys or a token file, policies, shard, bucket."""
    keys = ApiConfig("https://metastudio.example", "project", AkSk("ak", "sk", "sts-token"))
    token = ApiConfig("https://metastudio.example", "project", Token("t", Path("token.txt")))
    poll = PollPolicy(
        cadence=3.0,
        rate=10.0,
        job_timeout=3600.0,
        retry=RetryPolicy(attempts=6, base=1.0, cap=60.0),
        strategy="auto",
        outage_timeout=None,
    )
    download = DownloadPolicy(workers=4, kinds=frozenset({"audio", "srt"}), max_file_bytes=None)
    bucket = BucketUrl.parse("s3://nightly-tts/2026-12-01")
    assert_type(bucket, BucketUrl | None)
    return [
        RunConfig(keys, out, out / "manifest.jsonl"),
        RunConfig(
            token,
            out,
            None,  # the manifest on stdout
            poll=poll,
            download=download,
            retry_failed=True,
            grace=5.0,
            name_template="{name}",
            shard=Shard(0, 4),
            verify=True,
            bucket=bucket,
        ),
    ]


async def on_result(result: JobResult) -> None:
    """A Hooks.on_result: told of each manifest line once it is on disk."""
    assert_type(result.polls, int)


def on_progress(snapshot: Snapshot) -> None:
    """A Hooks.on_progress: a snapshot every interval."""
    assert_type(snapshot.done, int)
    assert_type(snapshot.eta_s, float | None)
    assert_type(snapshot.outage, str | None)


async def job_ids() -> AsyncIterator[str | Job]:
    """Ids as a submitter prints them, and a Job with its own file name and fields."""
    yield "job-1"
    yield Job("job-2", {"chapter": 1}, name="chapter-01")


def describe(result: JobResult) -> str:
    """Everything a result says, read the way a user reads it."""
    assert_type(result.job_id, str | None)
    assert_type(result.status, str)
    assert_type(result.files, Mapping[str, SavedFile])
    words = [result.status, str(result.elapsed_s)]
    audio = result.files.get("audio")
    if audio is not None:
        assert_type(audio.path, str)
        assert_type(audio.sha256, str)
        assert_type(audio.duration_s, float | None)
        words.append(f"{audio.path} {audio.bytes} bytes")
    if result.error is not None:
        assert_type(result.error, ErrorInfo)
        words += [result.error.code, result.error.message, result.error.request_id or "-"]
    return " ".join(words)


async def run(config: RunConfig) -> int:
    """A run to its end, with each error it can raise caught by its public name."""
    hooks = Hooks(on_result=on_result, on_progress=on_progress, progress_interval=5.0)
    try:
        async with Watcher(config, hooks) as w:
            assert_type(w, Watcher)
            async for result in w.watch(["job-1", "job-2"]):
                assert_type(result, JobResult)
                print(describe(result))
            async for result in w.watch(job_ids()):
                print(describe(result))
        summary = w.summary
        assert_type(summary, Summary)
        counts: Mapping[str, int] = summary.tally.statuses
        retries: Mapping[str, int] = summary.retries
        print(counts, retries, summary.batch)
    except AuthError as exc:
        assert_type(exc.status, int)
        assert_type(exc.request_id, str | None)
        return 2
    except ThrottledError as exc:
        assert_type(exc.retry_after, float | None)
        return 1
    except ApiError as exc:
        assert_type(exc.code, str)
        return 1
    except OutageError as exc:
        assert_type(exc.service, str)
        assert_type(exc.since, float)
        return 3
    except (LedgerError, ConfigError):
        return 2
    except (DownloadError, TransportError, InputError) as exc:
        assert_type(exc.transient, bool)
        return 1
    except WatcherError as exc:
        print(exc)
        return 1
    return 0
