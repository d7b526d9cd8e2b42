"""`watcher merge`: one line per job from many manifests, by the documented rules."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from watcher._commands.merge import add_arguments, run
from watcher._errors import ConfigError
from watcher._ledger import Line, parse_record, recover
from watcher._manifest import ErrorInfo, JobResult, SavedFile
from watcher._merge import merge
from watcher._report import Report

T0 = datetime(2026, 11, 25, 2, 0, 7, tzinfo=UTC)


def _result(job_id: str | None, status: str, at: float, **fields: Any) -> JobResult:
    error = None if status == "SUCCEED" else ErrorInfo("CODE", status)
    return JobResult(job_id, status, finished_at=T0 + timedelta(seconds=at), error=error, **fields)


def _write(path: Path, *results: JobResult, tail: bytes = b"") -> Path:
    path.write_bytes(b"".join(r.to_json() for r in results) + tail)
    return path


def _lines(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines()]


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args(list(argv)))


def _winners(*results: JobResult) -> list[tuple[str | None, str, str]]:
    entries = [Line("m", i, parse_record(orjson.loads(r.to_json()))) for i, r in enumerate(results)]
    return [
        (r["job_id"], r["status"], r["finished_at"])
        for r in (orjson.loads(m.to_json()) for m in merge(entries).records)
    ]


def test_shards_are_concatenated_in_order(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Disjoint shard manifests become one, file by file, with counts on stderr."""
    a = _write(tmp_path / "0.jsonl", _result("a", "SUCCEED", 1), _result("b", "FAILED", 2))
    b = _write(tmp_path / "1.jsonl", _result("c", "SUCCEED", 3))
    assert _run(str(a), str(b)) == 0
    captured = capsysbinary.readouterr()
    assert [r["job_id"] for r in _lines(captured.out)] == ["a", "b", "c"]
    assert captured.err.decode() == (
        "watcher merge: read 3 lines from 2 manifests; wrote 3; 0 superseded\n"
    )


def test_the_newest_answer_counts_whatever_it_says() -> None:
    """The latest finished_at wins, SUCCEED or not, read first or last (one rule, no
    "SUCCEED wins"): a later ERROR line is the job's truth, so a rerun watches it again."""
    assert _winners(
        _result("a", "FAILED", 1), _result("a", "SUCCEED", 2), _result("a", "ERROR", 3)
    ) == [("a", "ERROR", "2026-11-25T02:00:10Z")]
    assert _winners(_result("b", "TIMEOUT", 9), _result("b", "SUCCEED", 1)) == [
        ("b", "TIMEOUT", "2026-11-25T02:00:16Z")
    ]


def test_otherwise_the_latest_finished_at_wins_by_time_not_by_text() -> None:
    """Among equals the later finish wins, compared as times (`07.5Z` is after `07Z`)."""
    late = _result("a", "ERROR", 0.5)  # 02:00:07.5Z sorts before 02:00:07Z as text
    early = _result("a", "FAILED", 0)
    assert _winners(late, early) == [("a", "ERROR", "2026-11-25T02:00:07.500000Z")]
    assert _winners(_result("s", "SUCCEED", 5), _result("s", "SUCCEED", 4))[0][2].endswith("12Z")


def test_ties_and_missing_times_go_to_the_line_read_last() -> None:
    """With equal or absent finished_at the later line wins; a time without zone is UTC."""
    first, second = _result("a", "FAILED", 1), _result("a", "ERROR", 1)
    assert _winners(first, second)[0][1] == "ERROR"
    untimed = JobResult("u", "FAILED"), JobResult("u", "ERROR")
    assert _winners(*untimed)[0][1] == "ERROR"
    naive = parse_record({"job_id": "a", "status": "FAILED", "finished_at": "2026-11-25T02:00:07"})
    assert naive.finished_at is not None and naive.finished_at.tzinfo is UTC


def test_invalid_lines_are_deduplicated_by_their_input_location(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """The same bad input line reported by every shard is kept once; other bad lines stay."""
    bad4 = JobResult(None, "INVALID", source="jobs.jsonl", line=4)
    bad7 = JobResult(None, "INVALID", source="jobs.jsonl", line=7)
    a = _write(tmp_path / "0.jsonl", bad4, _result("a", "SUCCEED", 1), bad7)
    b = _write(tmp_path / "1.jsonl", bad4, _result("b", "SUCCEED", 1), bad7)
    out = tmp_path / "merged.jsonl"
    assert _run(str(a), str(b), "-o", str(out)) == 0
    rows = [(r["job_id"], r.get("line")) for r in _lines(out.read_bytes())]
    assert rows == [(None, 4), ("a", None), (None, 7), ("b", None)]
    assert b"wrote 4; 2 superseded" in capsysbinary.readouterr().err


def test_damaged_lines_are_skipped_with_a_warning_and_exit_1(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """A torn last line is skipped and named; the rest is merged and written; exit 1."""
    a = _write(tmp_path / "0.jsonl", _result("a", "SUCCEED", 1), tail=b'{"job_id": "b", "st')
    out = tmp_path / "merged.jsonl"
    assert _run(str(a), "-o", str(out)) == 1
    err = capsysbinary.readouterr().err.decode()
    assert f"{a}:2: skipped: torn last line" in err
    assert "1 unreadable lines skipped" in err
    assert [r["job_id"] for r in _lines(out.read_bytes())] == ["a"]


def test_output_may_replace_an_input(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """-o naming an input is safe (written aside, then renamed) and leaves no temporary file."""
    total = _write(
        tmp_path / "manifest.jsonl", _result("a", "ERROR", 1), _result("b", "SUCCEED", 1)
    )
    rerun = _write(tmp_path / "rerun.jsonl", _result("a", "SUCCEED", 5))
    assert _run(str(total), str(rerun), "-o", str(total)) == 0
    assert [(r["job_id"], r["status"]) for r in _lines(total.read_bytes())] == [
        ("a", "SUCCEED"),
        ("b", "SUCCEED"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.jsonl", "rerun.jsonl"]
    report = Report.from_path(str(total))
    assert (report.ok, report.superseded) == (True, 0)


def test_output_folder_is_created(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """-o into a folder that does not exist yet creates it."""
    a = _write(tmp_path / "0.jsonl", _result("a", "SUCCEED", 1))
    out = tmp_path / "new" / "dir" / "manifest.jsonl"
    assert _run(str(a), "--output", str(out)) == 0
    assert len(_lines(out.read_bytes())) == 1


def test_missing_input_is_a_config_error(tmp_path: Path) -> None:
    """An input that does not exist is a ConfigError naming it; nothing is written."""
    out = tmp_path / "out.jsonl"
    with pytest.raises(ConfigError, match=r"missing\.jsonl"):
        _run(str(tmp_path / "missing.jsonl"), "-o", str(out))
    assert not out.exists()
    with pytest.raises(ConfigError, match="only once"):
        _run("-", "-")


def test_paths_are_rewritten_relative_to_the_output_folder(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """A shard's `x.wav` (relative to its manifest) is `../a/x.wav` in a merge written to b/:
    the merged manifest still finds the file."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.wav").write_bytes(b"RIFF")
    saved = SavedFile(str(tmp_path / "a" / "x.wav"), 4, "0" * 64)
    shard = tmp_path / "a" / "manifest.jsonl"
    shard.write_bytes(_result("a", "SUCCEED", 1, files={"audio": saved}).to_json(shard.parent))
    assert _lines(shard.read_bytes())[0]["files"]["audio"]["path"] == "x.wav"
    out = tmp_path / "b" / "merged.jsonl"
    assert _run(str(shard), "-o", str(out)) == 0
    assert _lines(out.read_bytes())[0]["files"]["audio"]["path"] == "../a/x.wav"
    result = recover(out).job("a")
    assert result is not None and Path(result.files["audio"].path).read_bytes() == b"RIFF"
