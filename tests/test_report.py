"""`watcher report`: counts, latencies, failure groups, duplicates, damaged lines, rendering."""

from __future__ import annotations

import argparse
import io
import re
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from watcher._commands.report import add_arguments, run
from watcher._errors import ConfigError
from watcher._ledger import read_manifest
from watcher._manifest import ErrorInfo, JobResult, SavedFile, Tally
from watcher._report import (
    FailureGroup,
    Percentiles,
    Report,
    RunCounts,
    render_json,
    render_text,
)

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def _ok(job_id: str, elapsed: float = 3.0, polls: int = 2, size: int = 100) -> JobResult:
    return JobResult(
        job_id,
        "SUCCEED",
        "SUCCEED",
        files={
            "audio": SavedFile(f"out/{job_id}.wav", size, "ab" * 32),
            "srt": SavedFile(f"out/{job_id}.srt", 10, "cd" * 32),
        },
        polls=polls,
        first_poll_at=T0,
        finished_at=T0 + timedelta(seconds=elapsed),
        elapsed_s=elapsed,
    )


def _failed(job_id: str, code: str = "MSS.000000001", message: str = "boom") -> JobResult:
    return JobResult(
        job_id,
        "FAILED",
        "FAILED",
        polls=1,
        first_poll_at=T0,
        finished_at=T0 + timedelta(seconds=1),
        elapsed_s=1.0,
        error=ErrorInfo(code, message, "req-1"),
    )


def _invalid(line: int) -> JobResult:
    error = ErrorInfo("INVALID_INPUT", "not valid JSON")
    return JobResult(None, "INVALID", error=error, source="jobs.jsonl", line=line)


def _records(*results: JobResult) -> list[dict[str, Any]]:
    return [orjson.loads(r.to_json()) for r in results]


def _write(path: Path, *results: JobResult, tail: bytes = b"") -> Path:
    path.write_bytes(b"".join(r.to_json() for r in results) + tail)
    return path


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args(list(argv)))


def test_counts_statuses_files_and_bytes_of_every_job() -> None:
    """Each status is counted (absent ones as 0); files and bytes add up over the jobs."""
    report = Report.from_records(_records(_ok("a"), _ok("b", size=900), _failed("c"), _invalid(4)))
    assert report.jobs == 4
    assert report.statuses == {"SUCCEED": 2, "FAILED": 1, "ERROR": 0, "TIMEOUT": 0, "INVALID": 1}
    assert (report.files, report.bytes) == (4, 100 + 10 + 900 + 10)
    assert not report.ok


def test_percentiles_are_nearest_rank_over_jobs_with_a_latency() -> None:
    """p50/p90/p99/max of elapsed_s and polls; INVALID lines take no part."""
    jobs = [_ok(f"j{i}", elapsed=float(i), polls=i) for i in range(1, 101)]
    report = Report.from_records(_records(*jobs, _invalid(1)))
    assert report.elapsed_s == Percentiles(100, 50.0, 90.0, 99.0, 100.0)
    assert report.polls == Percentiles(100, 50, 90, 99, 100)
    assert Percentiles.of([7.5]) == Percentiles(1, 7.5, 7.5, 7.5, 7.5)
    assert Percentiles.of([]) is None


def test_failures_are_grouped_by_code_and_message_each_with_its_count_and_ids() -> None:
    """One group per (code, message): a code's messages are never summed under one example."""
    results = [_failed(f"v{i}", "FAILED", "the voice asset is unavailable") for i in range(7)]
    results += [_failed(f"t{i}", "FAILED", "the text is unreadable") for i in range(10)]
    results += [_failed(f"i{i}", "FAILED", "internal error") for i in range(7)]
    results += [_failed("g0", "DOWNLOAD_FAILED", "HTTP 403"), _invalid(9)]
    report = Report.from_records(_records(*results))
    assert report.failures == (
        FailureGroup("FAILED", 10, "the text is unreadable", ("t0", "t1", "t2")),
        FailureGroup("FAILED", 7, "internal error", ("i0", "i1", "i2")),
        FailureGroup("FAILED", 7, "the voice asset is unavailable", ("v0", "v1", "v2")),
        FailureGroup("DOWNLOAD_FAILED", 1, "HTTP 403", ("g0",)),
        FailureGroup("INVALID_INPUT", 1, "not valid JSON", ("jobs.jsonl:9",)),
    )
    text = render_text(report)
    rows = [line.split() for line in text.splitlines() if line.startswith("FAILED")]
    assert [row[1] for row in rows] == ["10", "7", "7"]
    assert "the voice asset is unavailable" in text and "internal error" in text


def test_the_last_line_of_a_job_wins_and_earlier_ones_are_superseded() -> None:
    """A job on several lines counts once, with its newest status; the others are superseded."""
    rerun = replace(_failed("c"), finished_at=T0 + timedelta(seconds=9))
    report = Report.from_records(
        _records(_failed("a"), _ok("b"), _ok("a"), _ok("c"), rerun, _invalid(3), _invalid(3))
    )
    assert report.jobs == 4
    assert report.statuses["SUCCEED"] == 2  # a (retried) and b
    assert report.statuses["FAILED"] == 1  # c failed on its rerun
    assert report.statuses["INVALID"] == 1  # the same bad input line, reported twice
    assert (report.records, report.superseded) == (7, 3)


def test_records_that_are_not_manifest_records_are_unreadable() -> None:
    """Dicts without a status, or with a non-string job id, are counted, not summed."""
    report = Report.from_records([{"job_id": "a"}, {"job_id": 5, "status": "SUCCEED"}])
    assert (report.jobs, report.unreadable, report.ok) == (0, 2, False)


def test_an_empty_manifest_is_an_empty_report() -> None:
    """No records: zero jobs, no percentiles, and it renders."""
    report = Report.from_records([])
    assert report.ok and report.jobs == 0 and report.elapsed_s is None
    assert "jobs" in render_text(report)


def test_damaged_lines_are_skipped_counted_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad middle line and a torn last line are skipped with warnings naming their lines."""
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(
        _ok("a").to_json()
        + b"{oops\n"
        + b"\n"
        + b"[1, 2]\n"
        + _ok("b").to_json()
        + b'{"job_id": "c", "sta'
    )
    assert _run(str(path)) == 1
    captured = capsys.readouterr()
    assert f"{path}:2: skipped: not valid JSON" in captured.err
    assert f"{path}:4: skipped: not a JSON object" in captured.err
    assert f"{path}:6: skipped: torn last line" in captured.err
    report = Report.from_path(str(path))
    assert (report.jobs, report.unreadable) == (2, 3)


def test_read_manifest_yields_entries_with_line_numbers(tmp_path: Path) -> None:
    """Entries carry their source and 1-based line number; a complete last line is fine."""
    path = _write(tmp_path / "m.jsonl", _ok("a"), tail=_ok("b").to_json().rstrip(b"\n"))
    items = list(read_manifest(str(path)))
    assert [(i.source, i.line) for i in items] == [(str(path), 1), (str(path), 2)]


def test_text_table_is_aligned_and_free_of_control_characters() -> None:
    """Values line up in one column; an ANSI escape in a message is shown escaped."""
    report = Report.from_records(
        _records(_ok("a"), _failed("b", "X\x1b[31m", "red \x1b[31malert\x1b[0m\r\n"))
    )
    text = render_text(report)
    assert "\x1b" not in text and "\r" not in text
    assert all(line.isprintable() for line in text.splitlines())
    assert "red \\x1b[31malert" in text
    counts = [line for line in text.splitlines()[:10] if line.split()[0] != "bytes"]
    assert len({len(line) for line in counts}) == 1, counts


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_text_table_shows_the_run_counts_when_given() -> None:
    """With RunCounts the requests, retries, throttled answers and run time are rows too."""
    report = Report.from_records(_records(_ok("a")))
    assert "API requests" not in render_text(report)
    retries = {"poll": 5, "list page": 0, "download": 3, "fresh links": 1}
    text = render_text(
        report, RunCounts(api_requests=1234, retries=retries, throttled=2, elapsed_s=61.25)
    )
    rows = {cells[0]: cells[-1] for cells in map(_cells, text.splitlines()) if cells[0]}
    assert "1,234" in text and rows["run time (s)"] == "61.2"
    assert rows["retries"] == "9" and rows["throttled (429)"] == "2"
    assert rows["poll"] == "5" and rows["download"] == "3" and rows["fresh links"] == "1"
    assert "list page" not in rows  # a kind without retries is left out


def test_json_has_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format json prints one JSON object with counts, percentiles and failure groups."""
    path = _write(tmp_path / "m.jsonl", _ok("a", elapsed=2.5), _failed("b"), _ok("a", elapsed=4.0))
    assert _run(str(path), "--format", "json") == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    doc = orjson.loads(out)
    assert doc["statuses"]["SUCCEED"] == 1 and doc["superseded"] == 1
    assert doc["elapsed_s"] == {"count": 2, "p50": 1.0, "p90": 4.0, "p99": 4.0, "max": 4.0}
    assert doc["failures"] == [
        {"code": "MSS.000000001", "count": 1, "message": "boom", "job_ids": ["b"]}
    ]
    assert "run" not in doc
    run_counts = RunCounts(api_requests=3, retries={"poll": 2}, throttled=0, elapsed_s=1.23456)
    run_doc = orjson.loads(render_json(Report.from_records([]), run_counts))["run"]
    assert run_doc["elapsed_s"] == 1.235 and run_doc["retries"] == {"poll": 2}


def test_exit_code_is_0_when_every_job_succeeded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """All SUCCEED and every line readable: exit 0, the table on stdout, nothing on stderr."""
    path = _write(tmp_path / "m.jsonl", _ok("a"), _ok("b"))
    assert _run(str(path)) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("jobs") and captured.err == ""


def test_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """MANIFEST '-' reads the manifest from stdin."""
    stdin = io.TextIOWrapper(io.BytesIO(_ok("a").to_json() + _failed("b").to_json()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert _run("-", "--format", "json") == 1
    assert orjson.loads(capsys.readouterr().out)["jobs"] == 2


def test_a_missing_manifest_is_a_config_error(tmp_path: Path) -> None:
    """A manifest path that does not exist is a ConfigError naming it (exit 2 by the caller)."""
    with pytest.raises(ConfigError, match=r"nope\.jsonl"):
        _run(str(tmp_path / "nope.jsonl"))


def test_wrong_shaped_lines_are_named_not_crashed_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`"line": "seven"` and `"files": {"audio": "x.wav"}` are warnings with their line numbers,
    not a ValueError or TypeError; the rest is reported; exit 1."""
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(
        b'{"status":"INVALID","line":"seven"}\n'
        + b'{"job_id":"x","status":"SUCCEED","files":{"audio":"x.wav"}}\n'
        + _ok("a").to_json()
    )
    assert _run(str(path)) == 1
    err = capsys.readouterr().err
    assert f"{path}:1: skipped: 'line' is not a whole number" in err
    assert f"{path}:2: skipped: file 'audio' is not an object" in err
    assert Report.from_path(str(path)).jobs == 1


def test_the_end_of_run_table_groups_by_code_and_message_too() -> None:
    """A run's own summary (from its Tally) splits one code by message, as `watcher report`."""
    tally = Tally()
    for i, message in enumerate(["voice gone", "voice gone", "text unreadable"]):
        tally.add(JobResult(f"j{i}", "FAILED", error=ErrorInfo("FAILED", message)))
    groups = {(g.code, g.message): g.count for g in Report.from_tally(tally).failures}
    assert groups == {("FAILED", "voice gone"): 2, ("FAILED", "text unreadable"): 1}
