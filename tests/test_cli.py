"""`watcher run` from the command line: flags, exit codes, stderr, files."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from helpers import TEST_AK as AK
from helpers import TEST_PROJECT_ID as PROJECT
from helpers import TEST_SK as SK
from helpers import SimFactory

import watcher
from watcher._inputs import Job
from watcher.cli import main

FAST = ["--cadence", "0.02", "--rate", "2000"]


def _login(monkeypatch: pytest.MonkeyPatch, sk: str = SK) -> None:
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", AK)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", sk)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)


def _write_jobs(path: Path, jobs: list[Job]) -> Path:
    path.write_text(
        "# jobs\n"
        + "".join(orjson.dumps({"job_id": j.job_id, **j.meta}).decode() + "\n" for j in jobs)
    )
    return path


def test_no_credentials_is_exit_2_with_advice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
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
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    """Each configuration error exits 2 with a message naming the offending flag or path."""
    _login(monkeypatch)
    assert main(argv) == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--rate", "--cadence", "--download-workers"])
def test_non_positive_numbers_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    """A zero rate, cadence or worker count is refused by the parser, naming the flag."""
    with pytest.raises(SystemExit) as caught:
        main(["run", flag, "0"])
    assert caught.value.code == 2
    assert flag in capsys.readouterr().err


def test_run_writes_files_manifest_and_summary(
    monkeypatch: pytest.MonkeyPatch,
    sim_factory: SimFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A file of four jobs: exit 0, a full manifest, files, a summary on stderr."""
    jobs = [Job(f"cli-{i}", {"chapter": i}) for i in range(4)]
    sim = sim_factory(jobs)
    _login(monkeypatch)
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
    monkeypatch: pytest.MonkeyPatch,
    sim_factory: SimFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """When the jobs fail the run still completes, and exits 1."""
    jobs = [Job("bad-1"), Job("bad-2")]
    sim = sim_factory(jobs, fail_percent=100)
    _login(monkeypatch)
    path = _write_jobs(tmp_path / "jobs.jsonl", jobs)
    argv = ["run", str(path), "--endpoint", sim.url, "--out", str(tmp_path / "o"), *FAST]
    assert main([*argv, "--log-format", "console"]) == 1
    assert re.search(r"FAILED\s+2\n", capsys.readouterr().err)


def test_stdin_and_manifest_to_stdout(
    monkeypatch: pytest.MonkeyPatch,
    sim_factory: SimFactory,
    tmp_path: Path,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    """Job ids piped on stdin, `--manifest -`: the manifest lines come out on stdout."""
    jobs = [Job("pipe-a"), Job("pipe-b")]
    sim = sim_factory(jobs)
    _login(monkeypatch)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"pipe-a\npipe-b\n")))
    code = main(["run", "--endpoint", sim.url, "--out", str(tmp_path), "--manifest", "-", *FAST])
    assert code == 0
    out = capfdbinary.readouterr().out
    assert sorted(orjson.loads(x)["job_id"] for x in out.splitlines()) == ["pipe-a", "pipe-b"]


def test_refused_credentials_exit_2_without_leaking_them(
    monkeypatch: pytest.MonkeyPatch,
    sim_factory: SimFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A wrong SK: exit 2, the gateway's code and request id on stderr, the SK nowhere."""
    sim = sim_factory([Job("a")])
    _login(monkeypatch, sk="WRONG-secret-value-123")
    path = _write_jobs(tmp_path / "jobs.jsonl", [Job("a")])
    code = main(["run", str(path), "--endpoint", sim.url, "--out", str(tmp_path / "o"), *FAST])
    assert code == 2
    err = capsys.readouterr().err
    assert "APIGW.0301" in err and "request id" in err
    assert "WRONG-secret" not in err
    assert (tmp_path / "o" / "manifest.jsonl").read_bytes() == b""


def test_an_unreachable_api_past_the_outage_timeout_is_exit_3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listens at the endpoint: after --outage-timeout, exit 3 with a clear message."""
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _login(monkeypatch)
    path = _write_jobs(tmp_path / "jobs.jsonl", [Job("a"), Job("b"), Job("c")])
    out = tmp_path / "o"
    args = ["--endpoint", f"http://127.0.0.1:{port}", "--out", str(out), "--quiet"]
    code = main(["run", str(path), *args, "--outage-timeout", "0.3", *FAST])
    assert code == 3
    err = capsys.readouterr().err
    assert "the API has been unreachable since" in err and "running the same command" in err
    assert (out / "manifest.jsonl").read_bytes() == b""


DEAD = ["--endpoint", "http://127.0.0.1:9"]


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--cadence", "nan"],
        ["run", "--cadence", "inf"],
        ["run", "--rate", "nan"],
        ["run", "--job-timeout", "nan"],
        ["run", "--request-timeout", "inf"],
        ["run", "--max-retries", "-1"],
        ["run", "--download-workers", "99999999"],
        ["run", "--speed-limit", "nan"],
        ["run", "--max-file-bytes", "-1"],
        ["run", "--outage-timeout", "inf"],
        ["run", "--max-pause", "nan"],
        ["run", "--push-interval", "nan"],
        ["run", "--metrics-port", "70000"],
        ["submit", "--rate", "nan"],
        ["sim", "--port", "99999"],
        ["sim", "--time-scale", "nan"],
    ],
)
def test_numbers_must_be_finite_and_in_range(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """NaN, infinities and out-of-range values are usage errors naming the flag, not crashes."""
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert argv[1] in err and f"usage: watcher {argv[0]}" in err


@pytest.mark.parametrize(
    ("variable", "value"),
    [("WATCHER_RATE", "nan"), ("WATCHER_CADENCE", "inf"), ("WATCHER_GRACE", "-1")],
)
def test_variables_are_range_checked_and_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    """`WATCHER_RATE=nan watcher config` is exit 2 naming the variable."""
    _login(monkeypatch)
    monkeypatch.setenv(variable, value)
    assert main(["config", *DEAD]) == 2
    assert variable in capsys.readouterr().err


def test_file_values_are_range_checked_and_the_file_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rate = nan` in the TOML file is refused, naming the file and the key."""
    _login(monkeypatch)
    config = tmp_path / "w.toml"
    config.write_text("[run]\nrate = nan\n")
    assert main(["config", "--config", str(config), *DEAD]) == 2
    assert f"--config {config}: rate" in capsys.readouterr().err


def test_max_retries_0_means_no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--max-retries 0` is accepted: one attempt per job and per file."""
    from watcher.cli import build_config, build_parser

    _login(monkeypatch)
    args = build_parser().parse_args(["run", *DEAD, "--max-retries", "0"])
    config = build_config(args, os.environ, None)
    assert config.poll.retry.attempts == 1 and config.download.retry.attempts == 1


def test_a_subcommands_mistake_shows_its_own_usage(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped flag of `watcher run` shows run's usage, not the top level's."""
    with pytest.raises(SystemExit) as caught:
        main(["run", "--outt", "x"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "usage: watcher run" in err and "--outt" in err


def test_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    """--region, --log-level and --log-format say their defaults in `watcher run --help`."""
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for default in ("(default: cn-north-4)", "(default: info)", "(default: auto)"):
        assert default in out
    assert "(default: 3.0)" in out and "(default: None)" not in out


def test_an_empty_input_warns_and_exits_4(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No job line and no bad line: a warning and exit 4, so `submit | run` failing is noticed."""
    _login(monkeypatch)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    assert main(["run", str(empty), *DEAD, "--out", str(tmp_path / "o"), "--quiet"]) == 4
    assert "no job" in capsys.readouterr().err


def test_only_bad_lines_is_not_an_empty_input(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad line is something read: INVALID, exit 1, not 4."""
    _login(monkeypatch)
    bad = tmp_path / "bad.txt"
    bad.write_text("not a job id!\n")
    assert main(["run", str(bad), *DEAD, "--out", str(tmp_path / "o"), "--quiet"]) == 1


def test_an_unexpected_error_is_one_internal_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A bug in a subcommand: exit 2, one 'internal error' line with how to see more."""
    from watcher import _report as report

    def broken(*args: object, **kwargs: object) -> report.Report:
        raise TypeError("a bug")

    monkeypatch.setattr(report.Report, "from_path", broken)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    assert main(["report", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert "internal error: TypeError: a bug" in err and "WATCHER_DEBUG=1" in err
    assert "Traceback" not in err


def _cli(
    argv: list[str], env: dict[str, str], cwd: Path, stdin: int | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run `watcher ARGV` in a process whose stdout is a pipe nobody reads (closed at once)."""
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    try:
        return subprocess.run(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "watcher", *argv],
            stdout=write_fd,
            stderr=subprocess.PIPE,
            stdin=stdin,
            env=env,
            cwd=cwd,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_fd)


def _process_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHER_", "HUAWEI"))}
    env.update(
        HOME=str(tmp_path / "home"),
        HUAWEICLOUD_SDK_AK=AK,
        HUAWEICLOUD_SDK_SK=SK,
        HUAWEICLOUD_SDK_PROJECT_ID=PROJECT,
    )
    return env


def test_a_closed_stdout_ends_every_command_quietly(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """`| head` closed the pipe: merge, report, config and run --manifest - stop with 141, and
    say nothing (no "Broken pipe", no traceback)."""
    jobs = [Job(f"pipe-{i}") for i in range(3)]
    sim = sim_factory(jobs)
    env = _process_env(tmp_path)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(
            orjson.dumps({"job_id": f"j{i}", "status": "SUCCEED", "files": {}}).decode() + "\n"
            for i in range(50)
        )
    )
    ids = _write_jobs(tmp_path / "ids.jsonl", jobs)
    run = ["run", str(ids), "--endpoint", sim.url, "--manifest", "-", "--quiet", *FAST]
    run += ["--log-level", "warning"]  # the info events of jobs succeeding are no message
    for argv in (
        ["merge", str(manifest)],
        ["report", str(manifest)],
        ["config", *DEAD],
        [*run, "--out", str(tmp_path / "o")],
    ):
        done = _cli(argv, env, tmp_path)
        assert (done.returncode, done.stderr) == (141, b""), argv


def test_a_closed_stdin_is_an_empty_run(tmp_path: Path) -> None:
    """`watcher run 0<&-`: exit 4 with a warning, no AttributeError."""
    env = _process_env(tmp_path)
    argv = '"$0" -m watcher run --endpoint http://127.0.0.1:9 --quiet --out o 0<&-'
    done = subprocess.run(  # noqa: S603 - a fixed command line
        ["/bin/sh", "-c", argv, sys.executable],
        capture_output=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 4, done.stderr
    assert b"no job" in done.stderr and b"Traceback" not in done.stderr


def test_run_reads_dev_fd(
    monkeypatch: pytest.MonkeyPatch, sim_factory: SimFactory, tmp_path: Path
) -> None:
    """`watcher run <(cat ids.txt)`: the /dev/fd/N path is read like a file."""
    sim = sim_factory([Job("fd-1")])
    _login(monkeypatch)
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"fd-1\n")
    os.close(write_fd)
    out = tmp_path / "o"
    try:
        argv = ["run", f"/dev/fd/{read_fd}", "--endpoint", sim.url, "--out", str(out), *FAST]
        assert main([*argv, "--quiet"]) == 0
    finally:
        os.close(read_fd)
    assert (out / "fd-1.wav").is_file()


def test_the_run_commands_path_loads_no_simulator(tmp_path: Path) -> None:
    """`watcher config` (the `run` command's flags, settings and RunConfig, through `main`)
    loads neither aiohttp.web nor any part of the simulator's server side."""
    code = (
        "import sys\nfrom watcher.cli import main\n"
        "assert main(['config', '--endpoint', 'http://127.0.0.1:9']) == 0\n"
        "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "HUAWEICLOUD_SDK_AK": AK,
        "HUAWEICLOUD_SDK_SK": SK,
        "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
    }
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stderr.split())
    assert "watcher._commands.run" in loaded
    assert "aiohttp.web" not in loaded
    assert (
        not {"watcher.sim.app", "watcher.sim.server", "watcher.sim.gateway", "watcher.sim.cli"}
        & loaded
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "/nonexistent/ids.txt", "--endpoint", "http://127.0.0.1:9"],
        ["submit", "/nonexistent/texts.jsonl", "--endpoint", "http://127.0.0.1:9"],
        ["report", "/nonexistent/manifest.jsonl"],
        ["merge", "/nonexistent/manifest.jsonl"],
        ["config", "--region", "mars"],
        ["sim", "--fault", "bogus=1"],
    ],
    ids=lambda argv: str(argv[0]),
)
def test_every_command_s_errors_are_reported_by_main(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Each command raises and `main` answers: exit 2, one `watcher: error:` line, no
    traceback, nothing on stdout."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.count("watcher: error: ") == 1, err


def test_only_main_turns_errors_into_exit_codes() -> None:
    """No module but `watcher/cli.py` calls the exit table's `report` (commands raise)."""
    package = Path(watcher.__file__).parent  # the package under test: the checkout or the wheel
    callers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if re.search(r"\bexits\.report\(|_exits import [^\n]*\breport\b", path.read_text())
    )
    assert callers == ["cli.py"]
