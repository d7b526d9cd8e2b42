"""Reading job ids: formats, validation, line numbers, streaming."""

from __future__ import annotations

import io
import os
import threading

import anyio
import pytest

from watcher.errors import InputError
from watcher.inputs import MAX_LINE_BYTES, Job, parse_line, read_stream


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
    """A job written to a pipe is yielded before the writer closes it."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=0)
    writer = os.fdopen(write_fd, "wb", buffering=0)
    closed = threading.Event()
    try:
        writer.write(b"first\n")
        with anyio.fail_after(5):
            async for item in read_stream(reader, "<pipe>"):
                assert item == Job("first", {}, "<pipe>", 1)
                assert not closed.is_set()
                break
    finally:
        writer.close()
        closed.set()
        reader.close()
