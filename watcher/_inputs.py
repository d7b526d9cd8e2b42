"""Job ids from files or stdin, as validated `Job` records, streamed as they arrive.

A line is a JSON object with a `job_id` (its other fields are kept as `meta`), or a bare job id.
Blank lines and `#` comments are skipped; a UTF-8 byte-order mark before the first line is
dropped. A bad line becomes an `InputError` naming its source and line number; it never stops the
stream. Job ids are restricted to `[A-Za-z0-9_-]{1,128}`, because they become file names under
`--out`. An input is any readable file, FIFO or `/dev/fd/N` (`watcher run <(cat ids.txt)`); a
closed stdin (`0<&-`) is an empty input; an idle terminal on stdin is told how to end it.
"""

from __future__ import annotations

import io
import os
import queue
import re
import stat
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import IO, Any

import anyio
import anyio.to_thread
import orjson
import structlog

from watcher._errors import ConfigError, InputError

log = structlog.get_logger("watcher.inputs")

JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
MAX_LINE_BYTES = 64 * 1024
CHUNK_BYTES = 64 * 1024
BOM = b"\xef\xbb\xbf"
# A person who typed `watcher run` at a terminal and sees nothing is told this after HINT_AFTER s.
HINT_AFTER = 2.0
TERMINAL_HINT = (
    "watcher: reading from the terminal (stdin), one line at a time; end with Ctrl-D, "
    "or name an input file instead"
)


def check_inputs(paths: Sequence[str]) -> None:
    """ConfigError unless each path (`-`: stdin, at most once) can be read as an input: a regular
    file, a FIFO, a character device or `/dev/fd/N`; a directory is named as one."""
    if list(paths).count("-") > 1:
        raise ConfigError("'-' (stdin) can be given only once")
    for path in paths:
        if path == "-":
            continue
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise ConfigError(f"input {path!r}: no such file") from None
        except OSError as exc:
            raise ConfigError(f"input {path!r}: {exc.strerror}") from None
        if stat.S_ISDIR(mode):
            raise ConfigError(f"input {path!r} is a directory: give the files in it")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"input {path!r}: permission denied")


@dataclass(frozen=True, slots=True)
class Job:
    """One job to watch, with where it was read."""

    job_id: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    source: str = "-"
    line: int = 0
    name: str | None = field(default=None, compare=False)

    @property
    def stem(self) -> str:
        """What its files are called before their suffixes: its `--name`, else its id."""
        return self.name or self.job_id


def check_job_id(job_id: object) -> str:
    """`job_id` if it is a usable job id; ValueError says why not."""
    if not isinstance(job_id, str):
        raise ValueError(f"job_id must be a string, not {type(job_id).__name__}")
    if not JOB_ID.fullmatch(job_id):
        shown = job_id if len(job_id) <= 40 else job_id[:40] + "..."
        raise ValueError(
            f"job_id {shown!r} is not 1-128 characters of letters, digits, '_' and '-'"
        )
    return job_id


def parse_line(text: str, source: str, line: int) -> Job | None:
    """The job on one line, None for a blank line or comment; InputError when unusable."""
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return None
    try:
        if stripped.startswith("{"):
            try:
                obj = orjson.loads(stripped)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON: {exc}") from exc
            if not isinstance(obj, dict) or "job_id" not in obj:
                raise ValueError("JSON object has no 'job_id'")
            job_id = check_job_id(obj.pop("job_id"))
            return Job(job_id, obj, source, line)
        return Job(check_job_id(stripped), {}, source, line)
    except ValueError as exc:
        raise InputError(source, line, str(exc)) from exc


def _split_lines(max_line_bytes: int) -> Callable[[bytes], list[tuple[int, bytes | None]]]:
    """A stateful splitter: feed it chunks (b"" at the end), get (line number, bytes) pairs.

    A line over `max_line_bytes` is reported as (number, None) and its bytes are dropped as they
    come, so a huge line never sits in memory.
    """
    buffer = bytearray()
    number = 0
    overlong = False

    def feed(chunk: bytes) -> list[tuple[int, bytes | None]]:
        nonlocal number, overlong
        out: list[tuple[int, bytes | None]] = []
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            number += 1
            if overlong or len(buffer) + end - start > max_line_bytes:
                out.append((number, None))
            else:
                out.append((number, bytes(buffer) + chunk[start:end]))
            buffer.clear()
            overlong = False
            start = end + 1
        rest = chunk[start:]
        if overlong or len(buffer) + len(rest) > max_line_bytes:
            overlong = True
            buffer.clear()
        else:
            buffer.extend(rest)
        if not chunk and (buffer or overlong):  # end of input without a final newline
            number += 1
            out.append((number, None if overlong else bytes(buffer)))
            buffer.clear()
            overlong = False
        return out

    return feed


def _decode(source: str, number: int, raw: bytes | None) -> Job | InputError | None:
    if raw is None:
        return InputError(source, number, f"line is longer than {MAX_LINE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InputError(source, number, f"not UTF-8 (byte {exc.start + 1})")
    try:
        return parse_line(text, source, number)
    except InputError as exc:
        return exc


class _PipeReader:
    """Reads stdin, or a pipe it opens itself (a FIFO, `/dev/fd/N`), in a daemon thread and hands
    the chunks over through a small queue.

    A read on an idle pipe can block for hours, and so can opening a FIFO no one writes to yet;
    in a daemon thread, and on the raw descriptor (no buffer lock), neither keeps the process from
    exiting on a signal. The thread may outlive the run: it never closes stdin (a descriptor we
    close could be reused by a socket meanwhile), and closes a pipe it opened only at its end.
    Each chunk is what one read returned, so a line a submitter prints now is seen now.
    """

    __slots__ = ("_queue",)

    def __init__(self, source: IO[bytes] | str) -> None:
        self._queue: queue.Queue[bytes | OSError] = queue.Queue(maxsize=4)
        threading.Thread(
            target=self._pump, args=(source,), name="watcher-input", daemon=True
        ).start()

    def _pump(self, source: IO[bytes] | str) -> None:
        try:
            if isinstance(source, str):
                with open(source, "rb", buffering=0) as stream:
                    self._pump_from(partial(os.read, stream.fileno()))
                return
            try:
                read: Callable[[int], bytes] = partial(os.read, source.fileno())
            except (OSError, AttributeError, io.UnsupportedOperation):
                read = getattr(source, "read1", source.read)
            self._pump_from(read)
        except OSError as exc:
            self._queue.put(exc)

    def _pump_from(self, read: Callable[[int], bytes]) -> None:
        while chunk := read(CHUNK_BYTES):
            self._queue.put(chunk)
        self._queue.put(b"")

    async def read(self) -> bytes:
        """The next chunk; b"" at the end of the stream."""
        while True:
            try:  # a bounded wait, so no worker thread stays blocked when the run ends
                item = await anyio.to_thread.run_sync(
                    self._queue.get, True, 0.25, abandon_on_cancel=True
                )
            except queue.Empty:
                continue
            if isinstance(item, OSError):
                raise item
            return item


async def stream_lines(
    stream: IO[bytes] | str,
    max_line_bytes: int = MAX_LINE_BYTES,
    *,
    stdin: bool = False,
    hint: Callable[[], None] | None = None,
    hint_after: float = HINT_AFTER,
) -> AsyncIterator[tuple[int, bytes | None]]:
    """(line number, bytes without the newline) of each line, as soon as it is complete; an
    over-long line comes as None. Reads happen in threads (`read1`: whatever has arrived).
    `stream` may be a path (a pipe, opened in the reading thread); `stdin` and a path are read
    in a daemon thread. With `hint`, it is called once if the first `hint_after` seconds bring
    no byte."""
    if stdin or isinstance(stream, str):
        read = _PipeReader(stream).read
    else:
        read1 = getattr(stream, "read1", stream.read)
        read = partial(anyio.to_thread.run_sync, read1, CHUNK_BYTES, abandon_on_cancel=True)
    feed = _split_lines(max_line_bytes)
    first: bytes | None = None
    if hint is not None:  # a timer beside the read: cancelling a threaded read could lose bytes
        async with anyio.create_task_group() as tg:

            async def later() -> None:
                await anyio.sleep(hint_after)
                hint()

            tg.start_soon(later)
            first = await read()
            tg.cancel_scope.cancel()
    while True:
        chunk: bytes = first if first is not None else await read()
        first = None
        for number, raw in feed(chunk):
            if number == 1 and raw is not None and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            yield number, raw
        if not chunk:
            return


async def read_lines(
    paths: Sequence[str], max_line_bytes: int = MAX_LINE_BYTES
) -> AsyncIterator[tuple[str, int, bytes | None]]:
    """(source, line number, bytes) of each line of each path in turn (`-` or none: stdin)."""
    for path in paths or ["-"]:
        if path == "-":
            if sys.stdin is None:  # closed (`0<&-`): nothing to read
                continue
            hint = _terminal_hint if sys.stdin.isatty() else None
            async for number, raw in stream_lines(
                sys.stdin.buffer, max_line_bytes, stdin=True, hint=hint
            ):
                yield "<stdin>", number, raw
            continue
        if not stat.S_ISREG(os.stat(path).st_mode):  # a pipe: may block, read in a daemon thread
            async for number, raw in stream_lines(path, max_line_bytes):
                yield path, number, raw
            continue
        with open(path, "rb") as stream:  # noqa: ASYNC230 - opening a file is instant
            async for number, raw in stream_lines(stream, max_line_bytes):
                yield path, number, raw


async def read_stream(stream: IO[bytes], source: str) -> AsyncIterator[Job | InputError]:
    """Jobs and bad lines from a binary stream, each as soon as its line is complete."""
    async for number, raw in stream_lines(stream):
        if (item := _decode(source, number, raw)) is not None:
            yield item


def _terminal_hint() -> None:
    if sys.stderr is not None:
        print(TERMINAL_HINT, file=sys.stderr, flush=True)


class _Duplicates:
    """Notices a job id seen again with other meta: the first line's meta is the one kept, so
    the later line is named beside it in a warning (same meta: the poller's info line says it)."""

    __slots__ = ("_first",)

    def __init__(self) -> None:
        self._first: dict[str, tuple[str, int, int]] = {}

    def check(self, job: Job) -> None:
        try:
            fingerprint = hash(orjson.dumps(job.meta, option=orjson.OPT_SORT_KEYS))
        except orjson.JSONEncodeError:
            fingerprint = hash(repr(job.meta))
        first = self._first.setdefault(job.job_id, (job.source, job.line, fingerprint))
        if first[2] != fingerprint:
            log.warning(
                "job id seen again with different meta; the first line's is kept",
                job_id=job.job_id,
                first=f"{first[0]}:{first[1]}",
                again=f"{job.source}:{job.line}",
            )


async def read_inputs(paths: Sequence[str]) -> AsyncIterator[Job | InputError]:
    """Jobs and bad lines from each path in turn (`-` is stdin; no paths means stdin)."""
    duplicates = _Duplicates()
    async for source, number, raw in read_lines(paths):
        if (item := _decode(source, number, raw)) is not None:
            if isinstance(item, Job):
                duplicates.check(item)
            yield item
