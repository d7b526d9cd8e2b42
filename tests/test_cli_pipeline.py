"""What nightly batches need from the command line: settings, names, shards, progress, pipes."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import TEST_AK, TEST_SK, SimFactory

from watcher._inputs import Job
from watcher.cli import main

FAST = ["--cadence", "0.02", "--rate", "2000"]


def _jobs_file(path: Path, jobs: list[Job]) -> Path:
    lines = [orjson.dumps({"job_id": j.job_id, **j.meta}).decode() for j in jobs]
    path.write_text("\n".join(lines) + "\n")
    return path


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def test_settings_precedence_flag_env_file(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flag beats WATCHER_*, which beats the --config file, which beats the default."""
    config = tmp_path / "w.toml"
    config.write_text('[run]\nrate = 3\ncadence = 7\ndownload-workers = 2\npoll = "list"\n')
    env.setenv("WATCHER_CADENCE", "5")
    env.setenv("WATCHER_POLL", "single")
    code = main(["config", "--config", str(config), "--endpoint", "http://127.0.0.1:9",
                 "--poll", "auto"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert 'poll = "auto"  # flag' in out
    assert "cadence = 5.0  # WATCHER_CADENCE" in out
    assert f"rate = 3.0  # {config}" in out
    assert "download-workers = 2" in out
    assert "grace = 10.0  # default" in out
    assert TEST_SK not in out and TEST_AK not in out


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"WATCHER_RATE": "0"}, "WATCHER_RATE"),
        ({"WATCHER_POLL": "sometimes"}, "WATCHER_POLL"),
        ({"WATCHER_INSECURE": "maybe"}, "WATCHER_INSECURE"),
    ],
)
def test_bad_environment_settings_name_the_variable(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    setting: dict[str, str],
    named: str,
) -> None:
    """A bad WATCHER_* value is exit 2 with the variable's name."""
    for key, value in setting.items():
        env.setenv(key, value)
    assert main(["config", "--endpoint", "http://127.0.0.1:9"]) == 2
    assert named in capsys.readouterr().err


def test_unknown_key_in_config_file(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt setting in the file is refused by name, not ignored."""
    config = tmp_path / "w.toml"
    config.write_text("rtae = 3\n")
    assert main(["config", "--config", str(config), "--endpoint", "http://127.0.0.1:9"]) == 2
    assert "'rtae'" in capsys.readouterr().err


def test_name_template_and_file_choice(
    env: pytest.MonkeyPatch, sim_factory: SimFactory, tmp_path: Path
) -> None:
    """--name '{chapter}-{job_id}' names files; a colliding --name is INVALID; --files audio."""
    jobs = [Job("n-1", {"chapter": "ch/01"}), Job("n-2", {"chapter": "ch 02"})]
    sim = sim_factory(jobs)
    out = tmp_path / "out"
    path = _jobs_file(tmp_path / "jobs.jsonl", jobs)
    args = ["run", str(path), "--endpoint", sim.url, "--out", str(out), "--files", "audio", *FAST]
    assert main([*args, "--name", "{chapter}-{job_id}", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "ch_01-n-1.wav",
        "ch_02-n-2.wav",
        "manifest.jsonl",
    ]

    same = [Job("c-1", {"book": "b"}), Job("c-2", {"book": "b"})]
    sim2 = sim_factory(same)
    path2 = _jobs_file(tmp_path / "same.jsonl", same)
    out2 = tmp_path / "out2"
    args2 = ["run", str(path2), "--endpoint", sim2.url, "--out", str(out2), "--name", "{book}"]
    assert main([*args2, *FAST, "--quiet"]) == 1
    lines = {str(r["job_id"]): r for r in _lines(out2 / "manifest.jsonl")}
    invalid = next(r for r in lines.values() if r["status"] == "INVALID")
    assert "of job c-1" in invalid["error"]["message"] and invalid["line"] == 2


def test_shards_cover_the_batch_once_and_merge(
    env: pytest.MonkeyPatch,
    sim_factory: SimFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Three shards watch disjoint parts of 30 jobs; merged, each job appears exactly once."""
    jobs = [Job(f"s-{i:02d}") for i in range(30)]
    sim = sim_factory(jobs)
    path = _jobs_file(tmp_path / "jobs.jsonl", jobs)
    manifests = []
    for k in range(3):
        out = tmp_path / f"shard{k}"
        args = ["run", str(path), "--endpoint", sim.url, "--out", str(out), "--shard", f"{k}/3"]
        assert main([*args, *FAST, "--quiet"]) == 0
        manifests.append(out / "manifest.jsonl")
    counts = [len(_lines(m)) for m in manifests]
    assert sum(counts) == 30 and all(counts)
    merged = tmp_path / "all.jsonl"
    assert main(["merge", *map(str, manifests), "-o", str(merged)]) == 0
    assert sorted(r["job_id"] for r in _lines(merged)) == [j.job_id for j in jobs]
    capsys.readouterr()
    assert main(["report", str(merged), "--format", "json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["statuses"]["SUCCEED"] == 30


def test_progress_is_logged_without_control_characters(
    env: pytest.MonkeyPatch,
    sim_factory: SimFactory,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Not on a terminal: progress comes as JSON `progress` events; --quiet silences them."""
    jobs = [Job(f"p-{i}") for i in range(3)]
    sim = sim_factory(jobs, time_scale=0.05)
    path = _jobs_file(tmp_path / "jobs.jsonl", jobs)
    base = ["run", str(path), "--endpoint", sim.url, *FAST, "--log-format", "json"]
    assert main([*base, "--out", str(tmp_path / "a"), "--progress-interval", "0.05"]) == 0
    err = capfd.readouterr().err
    events = [orjson.loads(x) for x in err.splitlines() if x.startswith("{")]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["done"] == 3 and progress[-1]["admitted"] == 3
    assert "\x1b" not in err and "\r" not in err
    assert (
        main([*base, "--out", str(tmp_path / "b"), "--progress-interval", "0.05", "--quiet"]) == 0
    )
    assert '"progress"' not in capfd.readouterr().err


def test_submit_piped_into_run(
    env: pytest.MonkeyPatch,
    sim_factory: SimFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`watcher submit texts | watcher run`: created jobs are watched with their fields as meta."""
    sim = sim_factory([])
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "one", "chapter": 1}\n{"text": "two", "chapter": 2}\n')
    assert main(["submit", str(texts), "--endpoint", sim.url, "--voice-asset-id", "v1"]) == 0
    printed = capsys.readouterr().out
    env.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(printed.encode())))
    out = tmp_path / "out"
    assert main(["run", "--endpoint", sim.url, "--out", str(out), *FAST, "--quiet"]) == 0
    lines = _lines(out / "manifest.jsonl")
    assert sorted(r["meta"]["chapter"] for r in lines) == [1, 2]
    assert {r["status"] for r in lines} == {"SUCCEED"}
