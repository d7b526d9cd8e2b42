"""`watcher run` from the command line: flags, exit codes, stderr, files."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import TEST_AK as AK
from conftest import TEST_PROJECT_ID as PROJECT
from conftest import TEST_SK as SK

from watcher.cli import main
from watcher.inputs import Job

FAST = ["--cadence", "0.02", "--rate", "2000"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment: no credentials of the machine's, HOME in a temporary folder."""
    for name in (
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "CLOUD_SDK_AK",
        "CLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_PROJECT_ID",
        "METASTUDIO_AUTH_TOKEN",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def _login(env: pytest.MonkeyPatch, sk: str = SK) -> None:
    env.setenv("HUAWEICLOUD_SDK_AK", AK)
    env.setenv("HUAWEICLOUD_SDK_SK", sk)
    env.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)


def _write_jobs(path: Path, jobs: list[Job]) -> Path:
    path.write_text(
        "# jobs\n"
        + "".join(orjson.dumps({"job_id": j.job_id, **j.meta}).decode() + "\n" for j in jobs)
    )
    return path


def test_no_credentials_is_exit_2_with_advice(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without any credentials the run stops before any work, naming what to set."""
    assert main(["run", "--endpoint", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "no credentials" in err and "HUAWEICLOUD_SDK_AK" in err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["run", "--region", "mars-1"], "--region"),
        (["run", "--endpoint", "ftp://x"], "--endpoint"),
        (["run", "--endpoint", "http://127.0.0.1:9", "missing.txt"], "missing.txt"),
        (["run", "--endpoint", "http://127.0.0.1:9", "--project-id", "../x"], "--project-id"),
    ],
)
def test_bad_configuration_names_the_flag(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    """Each configuration error exits 2 with a message naming the offending flag or path."""
    _login(env)
    assert main(argv) == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--rate", "--cadence", "--download-workers"])
def test_non_positive_numbers_are_usage_errors(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    """A zero rate, cadence or worker count is refused by the parser, naming the flag."""
    with pytest.raises(SystemExit) as caught:
        main(["run", flag, "0"])
    assert caught.value.code == 2
    assert flag in capsys.readouterr().err


def test_run_writes_files_manifest_and_summary(
    env: pytest.MonkeyPatch, sim_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file of four jobs: exit 0, a full manifest, files, a summary on stderr."""
    jobs = [Job(f"cli-{i}", {"chapter": i}) for i in range(4)]
    sim = sim_factory(jobs)
    _login(env)
    out = tmp_path / "out"
    code = main(
        [
            "run",
            str(_write_jobs(tmp_path / "jobs.jsonl", jobs)),
            "--endpoint",
            sim.url,
            "--out",
            str(out),
            *FAST,
        ]
    )
    assert code == 0
    lines = [orjson.loads(x) for x in (out / "manifest.jsonl").read_bytes().splitlines()]
    assert len(lines) == 4 and {r["status"] for r in lines} == {"SUCCEED"}
    assert (out / "cli-0.wav").is_file()
    err = capsys.readouterr().err
    # Off a terminal the logs are JSON lines, and so is the summary: one `run summary` event.
    events = [orjson.loads(line) for line in err.splitlines()]
    summary = [e for e in events if e["event"] == "run summary"]
    assert len(summary) == 1 and summary[0]["statuses"]["SUCCEED"] == 4
    assert SK not in err


def test_any_failed_job_makes_exit_1(
    env: pytest.MonkeyPatch, sim_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the jobs fail the run still completes, and exits 1."""
    jobs = [Job("bad-1"), Job("bad-2")]
    sim = sim_factory(jobs, fail_percent=100)
    _login(env)
    path = _write_jobs(tmp_path / "jobs.jsonl", jobs)
    argv = ["run", str(path), "--endpoint", sim.url, "--out", str(tmp_path / "o"), *FAST]
    assert main([*argv, "--log-format", "console"]) == 1
    assert re.search(r"FAILED\s+2\n", capsys.readouterr().err)


def test_stdin_and_manifest_to_stdout(
    env: pytest.MonkeyPatch,
    sim_factory: Any,
    tmp_path: Path,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    """Job ids piped on stdin, `--manifest -`: the manifest lines come out on stdout."""
    jobs = [Job("pipe-a"), Job("pipe-b")]
    sim = sim_factory(jobs)
    _login(env)
    env.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"pipe-a\npipe-b\n")))
    code = main(["run", "--endpoint", sim.url, "--out", str(tmp_path), "--manifest", "-", *FAST])
    assert code == 0
    out = capfdbinary.readouterr().out
    assert sorted(orjson.loads(x)["job_id"] for x in out.splitlines()) == ["pipe-a", "pipe-b"]


def test_refused_credentials_exit_2_without_leaking_them(
    env: pytest.MonkeyPatch, sim_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong SK: exit 2, the gateway's code and request id on stderr, the SK nowhere."""
    sim = sim_factory([Job("a")])
    _login(env, sk="WRONG-secret-value-123")
    path = _write_jobs(tmp_path / "jobs.jsonl", [Job("a")])
    code = main(["run", str(path), "--endpoint", sim.url, "--out", str(tmp_path / "o"), *FAST])
    assert code == 2
    err = capsys.readouterr().err
    assert "APIGW.0301" in err and "request id" in err
    assert "WRONG-secret" not in err
    assert (tmp_path / "o" / "manifest.jsonl").read_bytes() == b""


def test_an_unreachable_api_past_the_outage_timeout_is_exit_3(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listens at the endpoint: after --outage-timeout, exit 3 with a clear message."""
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _login(env)
    path = _write_jobs(tmp_path / "jobs.jsonl", [Job("a"), Job("b"), Job("c")])
    out = tmp_path / "o"
    args = ["--endpoint", f"http://127.0.0.1:{port}", "--out", str(out), "--quiet"]
    code = main(["run", str(path), *args, "--outage-timeout", "0.3", *FAST])
    assert code == 3
    err = capsys.readouterr().err
    assert "the API has been unreachable since" in err and "running the same command" in err
    assert (out / "manifest.jsonl").read_bytes() == b""
