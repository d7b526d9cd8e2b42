"""The ledger: one reader, one counting rule, damage never trusted, paths from the manifest."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from watcher._errors import LedgerError
from watcher._inputs import Job
from watcher._ledger import (
    BatchSummary,
    Ledger,
    Line,
    done,
    intact,
    parse_record,
    read_manifest,
    recover,
    render_batch,
    unchanged,
)
from watcher._manifest import JobResult, ManifestFile, SavedFile
from watcher._schedule import Watched

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
GOOD = b'{"job_id":"ok","status":"FAILED"}\n'


def _saved(path: Path, data: bytes = b"RIFF....") -> SavedFile:
    path.write_bytes(data)
    return SavedFile(str(path), len(data), hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"status":"INVALID","line":"seven"}', "'line' is not a whole number"),
        (b'{"job_id":"a","status":"SUCCEED","files":{"audio":"x.wav"}}', "file 'audio'"),
        (b'{"job_id":"a","status":"DONE"}', "unknown status 'DONE'"),
        (b'{"job_id":"a","status":"SUCCEED","polls":"3"}', "'polls'"),
        (b'{"job_id":7,"status":"SUCCEED"}', "'job_id' is not a string"),
        (b'{"job_id":"a","status":"FAILED","finished_at":"yesterday"}', "'finished_at'"),
        (b'{"status":"SUCCEED"}', "no 'job_id'"),
        (b'{"job_id":"a","status":"SUCCEED","files":{"audio":{"path":"a.wav"}}}', "sha256"),
        (b'{"job_id":"a","status":"FAILED","error":"boom"}', "'error' is not an object"),
    ],
)
def test_wrong_shaped_lines_are_named_and_treated_as_absent(
    tmp_path: Path, line: bytes, reason: str
) -> None:
    """Each wrong shape is a BadLine with its number and reason; it never crashes or counts."""
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(GOOD + line + b"\n")
    ledger = recover(path)
    assert [(bad.line, reason in bad.reason) for bad in ledger.bad] == [(2, True)]
    assert ledger.job("a") is None and ledger.job("ok") is not None
    assert f"{path}:2: skipped: " in str(ledger.bad[0])


def test_the_latest_finished_at_counts_and_a_tie_goes_to_the_later_line() -> None:
    """One rule: latest finished_at, else the line read later; superseded lines are counted."""

    def line(n: int, status: str, at: float | None) -> Line:
        when = None if at is None else T0 + timedelta(seconds=at)
        return Line("m", n, JobResult("a", status, finished_at=when))

    ledger = Ledger.of([line(1, "SUCCEED", 5), line(2, "ERROR", 1)])
    assert ledger.job("a") == JobResult("a", "SUCCEED", finished_at=T0 + timedelta(seconds=5))
    tie = Ledger.of([line(1, "FAILED", 3), line(2, "ERROR", 3), line(3, "TIMEOUT", None)])
    result = tie.job("a")
    assert result is not None and result.status == "ERROR" and tie.superseded == 2


def test_a_succeed_line_without_files_is_not_done() -> None:
    """SUCCEED with no files says nothing is on disk: never taken as done."""
    assert not done(JobResult("a", "SUCCEED"))


def test_cheap_check_is_size_and_mtime_and_verify_reads_the_bytes(tmp_path: Path) -> None:
    """Same size and mtime passes the cheap check even with other bytes; --verify catches it;
    with a changed mtime the bytes decide: a touched copy is intact, an altered file is not."""
    path = tmp_path / "a.wav"
    saved = _saved(path).stamped()
    assert saved.mtime_ns is not None
    assert unchanged(saved) and intact(saved) and intact(saved, verify=True)
    path.write_bytes(b"RIFX....")
    os.utime(path, ns=(saved.mtime_ns, saved.mtime_ns))
    assert intact(saved) and not intact(saved, verify=True)
    later = saved.mtime_ns + 10**9
    os.utime(path, ns=(later, later))
    assert not unchanged(saved) and not intact(saved)
    path.write_bytes(b"RIFF....")
    os.utime(path, ns=(later, later))
    assert not unchanged(saved) and intact(saved)


def test_without_a_recorded_mtime_the_sha256_decides(tmp_path: Path) -> None:
    """An earlier version's line (no mtime_ns) is checked by its sha256."""
    saved = _saved(tmp_path / "a.wav")
    assert intact(saved)
    (tmp_path / "a.wav").write_bytes(b"RIFX....")
    assert not intact(saved)


def test_written_paths_are_relative_to_the_manifest_and_resolved_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer stores paths relative to the manifest's folder, with v 2, size and mtime; the
    reader resolves them there from any working directory."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(tmp_path)
    saved = _saved(Path("out/a.wav"))
    manifest = ManifestFile(out / "manifest.jsonl")
    manifest.append([JobResult("a", "SUCCEED", files={"audio": saved})], durable=True)
    manifest.close()
    record = orjson.loads((out / "manifest.jsonl").read_bytes())
    assert record["v"] == 2 and record["files"]["audio"]["path"] == "a.wav"
    assert record["files"]["audio"]["mtime_ns"] == (out / "a.wav").stat().st_mtime_ns
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = recover(Path("../out/manifest.jsonl")).job("a")
    assert result is not None and done(result)
    assert os.path.samefile(result.files["audio"].path, out / "a.wav")


def test_earlier_versions_paths_are_tried_in_the_manifest_folder_then_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line without v: its path relative to the manifest folder if a file is there, else
    relative to the working directory, as the old run wrote it; absolute paths as they are."""
    out = tmp_path / "out"
    out.mkdir()
    _saved(out / "here.wav")
    _saved(tmp_path / "cwd.wav")
    monkeypatch.chdir(tmp_path)
    assert parse_record(_v1("here.wav"), out.absolute()).files["audio"].path == str(
        out.absolute() / "here.wav"
    )
    assert parse_record(_v1("cwd.wav"), out.absolute()).files["audio"].path == "cwd.wav"
    absolute = str(tmp_path / "cwd.wav")
    assert parse_record(_v1(absolute), out.absolute()).files["audio"].path == absolute


def _v1(path: str) -> dict[str, object]:
    audio = {"path": path, "bytes": 8, "sha256": "0" * 64}
    return {"job_id": "a", "status": "SUCCEED", "files": {"audio": audio}}


def test_read_manifest_names_an_unreadable_file(tmp_path: Path) -> None:
    """A manifest that is a folder is a LedgerError naming it, not a traceback."""
    with pytest.raises(LedgerError, match=f"manifest {tmp_path}: cannot read it"):
        list(read_manifest(str(tmp_path)))


def test_batch_summary_counts_the_whole_batch_beside_this_run() -> None:
    """Skipped jobs count with their ledger status; ok only when every job is SUCCEED."""
    summary = BatchSummary.of({"SUCCEED": 3}, {"SUCCEED": 10, "FAILED": 4}, rewatched=1)
    assert (summary.jobs, summary.watched, summary.rewatched, summary.skipped) == (17, 2, 1, 14)
    assert not summary.ok
    assert BatchSummary.of({}, {"SUCCEED": 5}, rewatched=0).ok
    text = render_batch(summary)
    assert text.splitlines()[0].split() == ["batch", "jobs", "this", "run"]
    assert "  FAILED                    4         0" in text
    assert "skipped as already done              14" in text


def test_saved_at_is_written_beside_finished_at_and_read_back() -> None:
    """`JobResult.of(saved_at=...)` puts when the files were saved on the line; it reads back."""
    seen = Watched(Job("a", {}), admitted=0.0).snapshot(1.0, T0)
    result = JobResult.of(seen, "FAILED", saved_at=T0 + timedelta(seconds=2))
    record = orjson.loads(result.to_json())
    assert (record["finished_at"], record["saved_at"]) == (
        "2026-11-25T02:00:00Z",
        "2026-11-25T02:00:02Z",
    )
    assert parse_record(record).saved_at == T0 + timedelta(seconds=2)
    assert "saved_at" not in orjson.loads(JobResult.of(seen, "FAILED").to_json())
