"""One run per batch: an flock held by one process keeps a second one out, and dies with it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SimFactory, make_jobs

from watcher._errors import LedgerError
from watcher._lock import LOCK_NAME, BatchLock, acquire, lock_paths
from watcher.cli import main

HOLD = """
import sys
from pathlib import Path
from watcher._lock import BatchLock
with BatchLock([Path(p) for p in sys.argv[1:]]):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder() -> Iterator[list[subprocess.Popen[str]]]:
    """Child processes that hold locks until their stdin closes; always killed at the end."""
    children: list[subprocess.Popen[str]] = []
    yield children
    for child in children:
        child.kill()
        child.communicate(timeout=10)


def _hold(children: list[subprocess.Popen[str]], *paths: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", HOLD, *map(str, paths)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    children.append(child)
    assert child.stdout is not None
    assert child.stdout.readline() == "locked\n"  # bounded by the per-test timeout
    return child


def test_a_second_process_is_refused_naming_the_holder(
    tmp_path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    """While another process holds the lock: LedgerError with its pid, host and start time."""
    path = tmp_path / LOCK_NAME
    child = _hold(holder, path)
    with pytest.raises(LedgerError) as caught:
        acquire(path)
    message = str(caught.value)
    assert f"pid {child.pid} on {socket.gethostname()}, running since 20" in message
    assert str(path) in message


def test_kill_9_leaves_no_stale_lock(tmp_path: Path, holder: list[subprocess.Popen[str]]) -> None:
    """The kernel drops the lock of a process killed with SIGKILL: the next run gets it."""
    path = tmp_path / LOCK_NAME
    child = _hold(holder, path)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert path.exists()  # the file outlives the process, the lock does not
    with BatchLock([path]):
        assert f"{os.getpid()} " in path.read_text()
    assert not path.exists()  # removed while still held, at the end of the run


def test_lock_paths_cover_out_and_the_manifest(tmp_path: Path) -> None:
    """--out is always locked, and the manifest by its own name; stdout adds none."""
    out = tmp_path / "out"
    assert lock_paths(out, None) == [out / LOCK_NAME]
    assert lock_paths(out, out / "manifest.jsonl") == [
        out / LOCK_NAME,
        out / ".manifest.jsonl.lock",
    ]
    other = tmp_path / "m" / "night.jsonl"
    assert lock_paths(out, other) == [out / LOCK_NAME, tmp_path / "m" / ".night.jsonl.lock"]


@pytest.mark.usefixtures("env")
def test_a_run_writing_another_runs_manifest_from_its_own_out_is_refused(
    tmp_path: Path, holder: list[subprocess.Popen[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Run A holds --out a (and a/manifest.jsonl); run B with --out b --manifest
    a/manifest.jsonl shares only the manifest, and is refused all the same."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    child = _hold(holder, *lock_paths(a, a / "manifest.jsonl"))
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("job-000\n")
    args = ["run", str(jobs), "--endpoint", "http://127.0.0.1:9", "--out", str(b), "--quiet"]
    assert main([*args, "--manifest", str(a / "manifest.jsonl")]) == 2
    assert f"pid {child.pid}" in capsys.readouterr().err
    assert not list(b.iterdir())  # its own lock, taken first, was given back and removed


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize("manifest", ["default", "-", "elsewhere"])
def test_watcher_run_exits_2_while_another_process_holds_the_batch(
    tmp_path: Path,
    holder: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
    manifest: str,
) -> None:
    """`watcher run` on a locked --out (also with --manifest -) or a locked manifest elsewhere:
    exit 2 naming the running process, and nothing touched (a .part of the other run stays)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "job-000.wav.part").write_bytes(b"the other run's download")
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("job-000\n")
    args = ["run", str(jobs), "--endpoint", "http://127.0.0.1:9", "--out", str(out), "--quiet"]
    if manifest == "elsewhere":
        (tmp_path / "m").mkdir()
        args += ["--manifest", str(tmp_path / "m" / "night.jsonl")]
        child = _hold(holder, tmp_path / "m" / ".night.jsonl.lock")
    else:
        args += ["--manifest", "-"] if manifest == "-" else []
        child = _hold(holder, out / LOCK_NAME)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "another run is using this batch" in err and f"pid {child.pid}" in err
    assert (out / "job-000.wav.part").exists()
    assert not (out / "manifest.jsonl").exists()


@pytest.mark.usefixtures("env")
def test_two_watcher_runs_on_one_out_the_second_exits_2(
    sim_factory: SimFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real `watcher run` process is polling slow jobs; a second `watcher run` on the same
    --out exits 2 naming it, and the first one's manifest and .part files are left alone."""
    jobs = make_jobs(2)
    sim = sim_factory(jobs, time_scale=100.0)  # jobs that take hours
    ids = tmp_path / "jobs.txt"
    ids.write_text("".join(f"{j.job_id}\n" for j in jobs))
    out = tmp_path / "out"
    args = ["run", str(ids), "--endpoint", sim.url, "--out", str(out), "--quiet"]
    first = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "watcher", *args, "--cadence", "0.05"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while sum(sim.sim.stats.requests().values()) < 2:  # bounded by the per-test timeout
            assert first.poll() is None, first.communicate()[1]
            time.sleep(0.02)
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"locked by pid {first.pid} on {socket.gethostname()}" in err
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=15)
    assert first.returncode == 130
