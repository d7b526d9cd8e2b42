"""`watcher submit`: one TTS job per input line, each new job id printed as a JSON line.

    TEXTS.jsonl ─line─▶ Request ─▶ RateLimiter (--rate) ─▶ CreateAsyncTtsJob ─▶ stdout, in order

An input line is a JSON object with `text`. Its CreateAsyncTtsJob body fields (`BODY_FIELDS`) go
into the request, with the flags as defaults for the ones it lacks; every other field is passed
through to the output line `{"job_id": ..., <pass-through fields>}`, which `watcher run` reads
with the other fields as `meta`: `watcher submit texts.jsonl | watcher run` works.

Requests leave in input order, evenly spaced by the limiter, up to `max_in_flight` at once; output
lines (and messages about lines) come in input order too, each as soon as its line and every line
before it are settled. A bad line is reported with its file and line number and skipped; an API
error is reported with the line, code and request id, and the run goes on. A 429 is retried after
a pause; nothing else is, because a POST retried after a lost answer could create the job twice.
Refused credentials (AuthError) or an API that cannot be connected to (nothing was sent) stop
everything at once: requests not yet sent are not sent, the ones in flight are awaited so that no
created job goes unprinted, and the command exits 2. With `--rest FILE` every input line that did
not become a job (bad, refused, unanswered, not tried, not yet read) is copied to FILE as it was,
so `watcher submit rest.jsonl` finishes the work. `submit` is the whole of it over one API
session; the command (`watcher._commands.submit`) prints the lines and the summary.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import anyio
import anyio.to_thread
import orjson

from watcher._client import USER_AGENT, MetaStudioClient
from watcher._config import ApiConfig
from watcher._errors import (
    ApiError,
    AuthError,
    InputError,
    ThrottledError,
    TransportError,
    WatcherError,
)
from watcher._inputs import read_lines
from watcher._ratelimit import HEADROOM, RateLimiter
from watcher._retry import Retrying, RetryPolicy

# The CreateAsyncTtsJob body fields a line may carry; its other fields are passed through.
BODY_FIELDS = frozenset(
    {
        "text",
        "voice_asset_id",
        "audio_format",
        "need_timestamp",
        "gen_srt",
        "speed",
        "pitch",
        "volume",
        "priority",
        "callback_config",
    }
)
# A text may be 100,000 characters; with JSON escapes a line can be several times that.
MAX_LINE_BYTES = 1024 * 1024


class JobCreator(Protocol):
    """What submitting needs of the API client."""

    async def create_job(self, fields: Mapping[str, Any]) -> str: ...


@dataclass(frozen=True, slots=True)
class Request:
    """One job to create: its CreateAsyncTtsJob body, the fields printed beside its id, and where
    its line was read."""

    body: Mapping[str, Any]
    passthrough: Mapping[str, Any]
    source: str = "-"
    line: int = 0
    raw: bytes | None = field(default=None, compare=False, repr=False)


class BadLine(InputError):
    """An input line that cannot be a request, with its bytes (None: too long to keep)."""

    def __init__(self, error: InputError, raw: bytes | None) -> None:
        super().__init__(error.source, error.line, error.reason)
        self.raw = raw


@dataclass(frozen=True, slots=True)
class SubmitPolicy:
    """How fast and how hard lines are submitted.

    `rate`: CreateAsyncTtsJob requests a second (paced at `HEADROOM` of it, as the gateway's
    one-second count needs). `max_in_flight`: requests at most at once (sent or waiting for their
    slot). A 429 is the only answer tried again, up to `retry.attempts` tries of a line in all:
    each pauses every request (the limiter) for `retry.backoff` with the 429's Retry-After as the
    hint, else `throttle_pause`, so never less than the gateway asked. The jitter of the backoff
    is at most `retry.cap`, the same as `throttle_pause`: a pause without Retry-After is exactly
    `throttle_pause`.
    """

    rate: float = 10.0
    max_in_flight: int = 64
    retry: RetryPolicy = RetryPolicy(attempts=6, base=0.5, cap=2.0)
    throttle_pause: float = 2.0


@dataclass(slots=True)
class SubmitTally:
    """What happened to the lines: `lines` counts every line that was not blank or a comment."""

    lines: int = 0
    created: int = 0
    bad: int = 0
    failed: int = 0
    skipped: int = 0
    stopped: WatcherError | None = None

    @property
    def all_submitted(self) -> bool:
        """Whether every line became a job."""
        return self.created == self.lines


def parse_request(
    raw: bytes | None,
    source: str,
    line: int,
    defaults: Mapping[str, Any],
    *,
    keep_text: bool = False,
) -> Request | None:
    """The request on one input line (None for a blank line or `#` comment); InputError if bad.

    `raw` None stands for a line longer than MAX_LINE_BYTES. Fields of the line win over
    `defaults`. With `keep_text` the text is printed beside the job id too.
    """
    if raw is None:
        raise InputError(source, line, f"line is longer than {MAX_LINE_BYTES} bytes")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise InputError(source, line, f"not UTF-8 (byte {exc.start + 1})") from None
    if not text or text.startswith("#"):
        return None
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InputError(source, line, f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(source, line, "not a JSON object")
    if "text" not in doc:
        raise InputError(source, line, "no 'text'")
    if not isinstance(doc["text"], str):
        raise InputError(source, line, f"'text' must be a string, not {type(doc['text']).__name__}")
    if not doc["text"].strip():
        raise InputError(source, line, "'text' is empty")
    if "job_id" in doc:
        raise InputError(source, line, "has a 'job_id': is this line already submitted?")
    body = {**defaults, **{k: v for k, v in doc.items() if k in BODY_FIELDS}}
    if not body.get("voice_asset_id"):
        raise InputError(source, line, "no 'voice_asset_id' on the line and no --voice-asset-id")
    passthrough = {
        k: v for k, v in doc.items() if k not in BODY_FIELDS or (keep_text and k == "text")
    }
    return Request(body, passthrough, source, line, raw)


async def read_requests(
    paths: Sequence[str], defaults: Mapping[str, Any], *, keep_text: bool = False
) -> AsyncGenerator[Request | InputError, None]:
    """The requests, and the bad lines, of `paths` in order."""
    async for source, number, raw in read_lines(paths, MAX_LINE_BYTES):
        try:
            request = parse_request(raw, source, number, defaults, keep_text=keep_text)
        except InputError as exc:
            yield BadLine(exc, raw)
            continue
        if request is not None:
            yield request


@dataclass(slots=True)
class _Pending:
    """A request on its way; `done` is set once it is settled, one way or another."""

    request: Request
    done: anyio.Event = field(default_factory=anyio.Event)
    job_id: str | None = None
    error: WatcherError | None = None


def never_sent(error: BaseException) -> bool:
    """Whether the request certainly did not leave: no connection could be made (refused, no
    route, DNS, TLS handshake), so no job was created."""
    return isinstance(error, TransportError) and isinstance(
        error.__cause__, aiohttp.ClientConnectorError
    )


def describe(error: WatcherError) -> str:
    """Why a line was not submitted, with the API's code and request id when there is one;
    "may or may not" only when the request was sent and no answer came."""
    if isinstance(error, ApiError):
        return f"HTTP {error.status} {error.code}: {error.message} (request id {error.request_id})"
    if never_sent(error):
        return f"could not connect, nothing was sent: {error}"
    if isinstance(error, TransportError):
        return f"no answer, the job may or may not have been created: {error}"
    return str(error)


async def submit_all(
    creator: JobCreator,
    items: AsyncIterator[Request | InputError],
    limiter: RateLimiter,
    *,
    emit: Callable[[Mapping[str, Any]], None],
    warn: Callable[[str], None],
    policy: SubmitPolicy = SubmitPolicy(),
    rest: Callable[[bytes], None] | None = None,
    rng: random.Random | None = None,
) -> SubmitTally:
    """Create a job for each request; `emit` each `{"job_id", **passthrough}` in input order.

    `warn` hears of each line not submitted, in input order; `rest`, if given, gets the bytes of
    each such line (every line of `items` that did not become a job, also those after a stop:
    `items` is then read to its end). Returns the tally; when credentials were refused or the
    API could not be connected to, `tally.stopped` holds the error and no line after it was
    tried. The caller closes `items`. `rng` draws the jitter of 429 pauses.
    """
    rng = rng or random.Random()
    tally = SubmitTally()
    slots = anyio.Semaphore(policy.max_in_flight)
    send, receive = anyio.create_memory_object_stream[_Pending | InputError](math.inf)
    reading = anyio.CancelScope()
    waiting: set[anyio.CancelScope] = set()

    def stop(exc: WatcherError) -> None:
        tally.stopped = tally.stopped or exc
        if rest is None:  # with --rest, the lines not read yet are copied there
            reading.cancel()
        for scope in waiting:
            scope.cancel()

    async def create(pending: _Pending) -> None:
        retrying = Retrying(policy.retry, rng)
        try:
            while True:
                with anyio.CancelScope() as scope:
                    waiting.add(scope)
                    if tally.stopped is None:
                        await limiter.acquire()
                waiting.discard(scope)
                if tally.stopped is not None:
                    return
                try:
                    pending.job_id = await creator.create_job(pending.request.body)
                    return
                except AuthError as exc:
                    pending.error = exc
                    stop(exc)
                    return
                except ThrottledError as exc:
                    pending.error = exc
                    # the pause is everyone's (the limiter's), not this task's: no sleep here
                    pause = retrying.failed(hint=exc.retry_after or policy.throttle_pause)
                    if pause is None:
                        return
                    limiter.pause(pause)
                except WatcherError as exc:
                    pending.error = exc
                    if never_sent(exc):
                        stop(exc)
                    return
        finally:
            pending.done.set()

    def settle(item: _Pending | InputError) -> None:
        if isinstance(item, InputError):
            tally.bad += 1
            warn(f"{item}; skipped")
            raw = getattr(item, "raw", None)
        elif item.job_id is not None:
            tally.created += 1
            emit({"job_id": item.job_id, **item.request.passthrough})
            return
        elif item.error is not None:
            tally.failed += 1
            where = f"{item.request.source}:{item.request.line}"
            warn(f"{where}: not submitted: {describe(item.error)}")
            raw = item.request.raw
        else:
            tally.skipped += 1
            raw = item.request.raw
        if rest is not None and raw is not None:
            rest(raw + b"\n")

    async def settle_in_order() -> None:
        with receive:
            async for item in receive:
                if isinstance(item, _Pending):
                    await item.done.wait()
                settle(item)
                slots.release()

    async with anyio.create_task_group() as tg:
        tg.start_soon(settle_in_order)
        with send, reading:
            async for item in items:
                await slots.acquire()
                if isinstance(item, InputError):
                    send.send_nowait(item)
                    tally.lines += 1
                    continue
                pending = _Pending(item)
                send.send_nowait(pending)
                tally.lines += 1
                if tally.stopped is None:
                    tg.start_soon(create, pending)
                else:  # stopped: read on only to copy the line to --rest
                    pending.done.set()
    return tally


async def submit(
    api: ApiConfig,
    paths: Sequence[str],
    defaults: Mapping[str, Any],
    *,
    emit: Callable[[Mapping[str, Any]], None],
    warn: Callable[[str], None],
    policy: SubmitPolicy = SubmitPolicy(),
    keep_text: bool = False,
    rest: Callable[[bytes], None] | None = None,
) -> SubmitTally:
    """Submit every line of `paths` (`-`: stdin) with `defaults` for the body fields a line lacks,
    through one API session, at `policy.rate`: `submit_all` over `read_requests`."""
    limiter = RateLimiter(policy.rate, headroom=HEADROOM)
    requests = read_requests(paths, defaults, keep_text=keep_text)
    async with (
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=policy.max_in_flight),
            headers={"User-Agent": USER_AGENT},
        ) as session,
        aclosing(requests) as items,
    ):
        client = MetaStudioClient(api, session)
        return await submit_all(
            client, items, limiter, emit=emit, warn=warn, policy=policy, rest=rest
        )
