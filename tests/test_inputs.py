"""Reading job ids: formats, validation, line numbers, streaming."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
import structlog

from watcher._errors import ConfigError, InputError
from watcher._inputs import (
    MAX_LINE_BYTES,
    Job,
    check_inputs,
    parse_line,
    read_inputs,
    read_stream,
    stream_lines,
)


async def _collect(data: bytes) -> list[Job | InputError]:
    return [item async for item in read_stream(io.BytesIO(data), "in.jsonl")]


def test_json_line_keeps_other_fields_as_meta() -> None:
    """A JSON object's job_id is taken out and every other field kept as meta."""
    job = parse_line('{"job_id": "abc", "chapter": 3}', "f", 7)
    assert job == Job("abc", {"chapter": 3}, "f", 7)
    assert job is not None and job.meta == {"chapter": 3}


def test_bare_ids_blanks_and_comments() -> None:
    """A bare id is a job; blank lines and # comments are nothing."""
    assert parse_line("  job-1_A \n", "f", 1) == Job("job-1_A", {}, "f", 1)
    assert parse_line("   ", "f", 2) is None
    assert parse_line("# a comment", "f", 3) is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"job_id": ', "not valid JSON"),
        ('{"id": "x"}', "no 'job_id'"),
        ('{"job_id": 5}', "must be a string"),
        ("../etc/passwd", "is not 1-128 characters"),
        ("a" * 129, "is not 1-128 characters"),
        ("has space", "is not 1-128 characters"),
    ],
)
def test_bad_lines_name_source_line_and_reason(line: str, reason: str) -> None:
    """Each kind of bad line raises InputError with its source, number and a reason."""
    with pytest.raises(InputError) as caught:
        parse_line(line, "jobs.txt", 12)
    assert str(caught.value).startswith("jobs.txt:12: ")
    assert reason in str(caught.value)


@pytest.mark.anyio
async def test_stream_numbers_lines_and_goes_on_after_bad_ones() -> None:
    """Bad lines (JSON, UTF-8) are reported with their number and the good ones still come."""
    data = b'a1\n\n{bad\n\xff\xfe\n# c\n{"job_id": "a2", "k": 1}\na3'
    items = await _collect(data)
    assert [(type(i).__name__, i.line) for i in items] == [
        ("Job", 1),
        ("InputError", 3),
        ("InputError", 4),
        ("Job", 6),
        ("Job", 7),
    ]
    assert "not UTF-8" in str(items[2])


@pytest.mark.anyio
async def test_overlong_line_is_reported_not_buffered() -> None:
    """A line over the limit becomes one InputError, and the next line is read normally."""
    data = b"x" * (MAX_LINE_BYTES * 3) + b"\nok\n"
    items = await _collect(data)
    assert isinstance(items[0], InputError) and items[0].line == 1
    assert "longer than" in str(items[0])
    assert items[1] == Job("ok", {}, "in.jsonl", 2)


@pytest.mark.anyio
async def test_lines_are_yielded_as_they_arrive_on_a_pipe() -> None:
    """Each line written to a pipe is yielded while the writer keeps it open (a reader that
    waited for the end would never yield and hit the bound); the close then ends the input."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=0)
    writer = os.fdopen(write_fd, "wb", buffering=0)
    try:
        items = read_stream(reader, "<pipe>")
        with anyio.fail_after(5):
            writer.write(b"first\n")
            first = await anext(items)
            writer.write(b"second\n")
            second = await anext(items)
            writer.close()
            rest = [item async for item in items]
        assert first == Job("first", {}, "<pipe>", 1)
        assert second == Job("second", {}, "<pipe>", 2)
        assert rest == []
    finally:
        writer.close()
        reader.close()


@pytest.mark.anyio
async def test_a_byte_order_mark_before_the_first_line_is_dropped() -> None:
    """A UTF-8 BOM (Windows editors) does not make the first job INVALID."""
    items = await _collect(b"\xef\xbb\xbfjob-1\n\xef\xbb\xbfjob-2\n")
    assert items[0] == Job("job-1", {}, "in.jsonl", 1)
    assert isinstance(items[1], InputError)  # only the first line may start with one


@pytest.mark.anyio
async def test_a_fifo_and_dev_fd_are_inputs(tmp_path: Path) -> None:
    """A named pipe and `/dev/fd/N` (what `<(cat ids)` gives) pass the check and are read."""
    fifo = tmp_path / "ids.fifo"
    os.mkfifo(fifo)
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"from-fd\n")
    os.close(write_fd)
    try:
        check_inputs([str(fifo), f"/dev/fd/{read_fd}", "-"])
        with anyio.fail_after(5):
            items = [item async for item in read_inputs([f"/dev/fd/{read_fd}"])]
    finally:
        os.close(read_fd)
    assert [getattr(i, "job_id", None) for i in items] == ["from-fd"]


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: None, "no such file"),
    ],
)
def test_unusable_inputs_are_named_for_what_they_are(
    tmp_path: Path, make: Callable[[Path], None], says: str
) -> None:
    """A directory is called a directory, a missing path missing."""
    path = tmp_path / "ids"
    make(path)
    with pytest.raises(ConfigError, match=says):
        check_inputs([str(path)])
    with pytest.raises(ConfigError, match="only once"):
        check_inputs(["-", "-"])


@pytest.mark.anyio
async def test_a_closed_stdin_is_an_empty_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """`0<&-` leaves sys.stdin None: no job, no AttributeError."""
    monkeypatch.setattr(sys, "stdin", None)
    assert [item async for item in read_inputs([])] == []


@pytest.mark.anyio
async def test_an_idle_reader_is_told_how_to_end_and_loses_nothing() -> None:
    """No byte within `hint_after`: the hint comes once; the line typed after it is read."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=0)
    hinted = anyio.Event()
    try:
        with anyio.fail_after(5):
            lines = stream_lines(reader, hint=hinted.set, hint_after=0.01)
            async with anyio.create_task_group() as tg:

                async def type_after_the_hint() -> None:
                    await hinted.wait()
                    os.write(write_fd, b"typed\n")
                    os.close(write_fd)

                tg.start_soon(type_after_the_hint)
                got = [raw async for _, raw in lines]
    finally:
        reader.close()
    assert hinted.is_set() and got == [b"typed"]


@pytest.mark.anyio
async def test_no_hint_when_input_comes_at_once() -> None:
    """Lines already there: no hint, even with a zero delay that would pass while reading."""
    called: list[bool] = []
    with anyio.fail_after(5):
        got = [
            raw
            async for _, raw in stream_lines(
                io.BytesIO(b"a\n"), hint=lambda: called.append(True), hint_after=60
            )
        ]
    assert got == [b"a"] and called == []


@pytest.mark.anyio
async def test_a_job_id_again_with_other_meta_is_a_warning_naming_both_lines(
    tmp_path: Path,
) -> None:
    """Same id, other meta: a warning with both lines; same meta again: no warning."""
    path = tmp_path / "ids.jsonl"
    path.write_text(
        '{"job_id": "a", "ch": 1}\n{"job_id": "a", "ch": 1}\n{"job_id": "a", "ch": 2}\n'
    )
    with structlog.testing.capture_logs() as logs:
        items = [item async for item in read_inputs([str(path)])]
    assert len(items) == 3
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["first"] == f"{path}:1" and warnings[0]["again"] == f"{path}:3"


@pytest.mark.anyio
async def test_a_fifo_nobody_writes_to_yet_leaves_the_loop_free(tmp_path: Path) -> None:
    """Opening a FIFO blocks until a writer comes: it happens off the event loop, so the run
    goes on meanwhile and reads the lines once they come."""
    fifo = tmp_path / "ids.fifo"
    os.mkfifo(fifo)
    got: list[str] = []

    async def consume() -> None:
        async for item in read_inputs([str(fifo)]):
            got.append(getattr(item, "job_id", "?"))

    def write() -> None:
        with open(fifo, "wb") as writer:
            writer.write(b"late\n")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.01)  # never returns if opening the FIFO held the loop
            await anyio.to_thread.run_sync(write)
    assert got == ["late"]
