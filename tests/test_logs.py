"""Logs: redaction, what each level and format shows, and the screen they share."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from helpers import SimFactory, make_jobs, run_config, run_jobs

from watcher import _logs as logs
from watcher._inputs import Job
from watcher._logs import Redact
from watcher._progress import Screen, Snapshot
from watcher.cli import main

FAST = ["--cadence", "0.02", "--rate", "2000"]
SNAPSHOT = Snapshot(5.0, 12, 3, 4, 0, 1, 3, 1, 9.5, 3.0, 2, True, 20.0)


def test_secrets_are_masked_wherever_they_appear() -> None:
    """A secret inside strings, nested containers and exceptions is replaced by ***."""
    redact = Redact(["SK-SECRET", ""])
    event: dict[str, Any] = {
        "event": "sent Authorization with SK-SECRET",
        "nested": {"list": ["x SK-SECRET y", 3]},
        "exc": ValueError("token SK-SECRET expired"),
        "n": 5,
    }
    out = redact(None, "info", event)
    assert "SK-SECRET" not in repr(out)
    assert out["event"] == "sent Authorization with ***"
    assert out["n"] == 5


def _jobs_file(path: Path, jobs: list[Job]) -> Path:
    path.write_text("".join(orjson.dumps({"job_id": j.job_id}).decode() + "\n" for j in jobs))
    return path


def _run(sim_factory: SimFactory, tmp_path: Path, *flags: str) -> int:
    """`watcher run` of 12 jobs (about half FAILED) with `flags`, after a run killed mid-line
    (a torn manifest line, which is cut off with a warning)."""
    jobs = [Job(f"log-{i:02d}") for i in range(12)]
    sim = sim_factory(jobs, fail_percent=50)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = _jobs_file(tmp_path / "jobs.jsonl", jobs)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.jsonl").write_bytes(b'{"job_id": "log-0')
    argv = ["run", str(path), "--endpoint", sim.url, "--out", str(tmp_path / "out"), *FAST]
    return main([*argv, "--progress-interval", "0.05", *flags])


def test_json_logs_stay_pure_json_lines_and_end_with_one_summary_event(
    env: pytest.MonkeyPatch,
    sim_factory: SimFactory,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """--log-format json: every stderr line parses; the summary is one `run summary` event."""
    assert _run(sim_factory, tmp_path, "--log-format", "json") == 1
    err = capfd.readouterr().err
    events = [orjson.loads(line) for line in err.splitlines()]  # raises on any other line
    summaries = [e for e in events if e["event"] == "run summary"]
    assert len(summaries) == 1 and events[-1] is summaries[0]
    summary = summaries[0]
    assert summary["level"] == "info" and summary["jobs"] == 12
    failed = summary["statuses"]["FAILED"]
    assert failed and sum(g["count"] for g in summary["failures"]) == failed
    assert set(summary["run"]["retries"]) >= {"poll"} and "skipped" in summary
    assert any(e["event"] == "progress" for e in events)


def test_quiet_shows_only_warnings_and_errors_and_no_summary(
    env: pytest.MonkeyPatch,
    sim_factory: SimFactory,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """--quiet (even with --log-level debug): no progress, no table, nothing below warning."""
    flags = ("--quiet", "--log-level", "debug", "--log-format", "json")
    assert _run(sim_factory, tmp_path, *flags) == 1
    events = [orjson.loads(line) for line in capfd.readouterr().err.splitlines()]
    assert events, "the torn line's warning is shown"
    assert {e["level"] for e in events} <= {"warning", "error"}
    assert not [e for e in events if e["event"] in ("progress", "run summary")]
    assert _run(sim_factory, tmp_path / "console", "--quiet", "--log-format", "console") == 1
    err = capfd.readouterr().err
    assert "jobs" not in err and "SUCCEED" not in err and "[info" not in err


def test_console_logs_go_through_the_screen_and_json_logs_never_do() -> None:
    """With a Screen, console log lines are printed above its status; JSON logs bypass it."""
    out = io.StringIO()
    screen = Screen(out, width=lambda: 80)
    screen.show_status(SNAPSHOT)
    logs.configure(level="info", fmt="console", screen=screen)
    structlog.get_logger("t").warning("throttled", pause_s=2)
    written = out.getvalue()
    assert written.index("throttled") < written.rindex("jobs:")  # the status came back after
    assert written.count("\r\x1b[K") >= 2  # erased before the log line
    structlog.reset_defaults()
    out.seek(0)
    out.truncate()
    logs.configure(level="info", fmt="json", screen=screen)
    assert not out.getvalue()


@pytest.mark.anyio
async def test_a_clean_night_logs_no_line_per_job_at_info(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Events about one job (seen SUCCEED, saved, FAILED by the API) are debug: a 70,000-job
    night's info log holds the run's own events, not 70,000 lines; the manifest has each job."""
    jobs = make_jobs(10)
    sim = sim_factory(jobs, fail_percent=30)
    with structlog.testing.capture_logs() as events:
        await run_jobs(run_config(sim.url, tmp_path), *jobs)
    per_job = [e for e in events if "job_id" in e]
    assert per_job  # the events exist, at debug
    assert {e["log_level"] for e in per_job} == {"debug"}, per_job
