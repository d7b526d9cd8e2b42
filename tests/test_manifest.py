"""The manifest as the batch's ledger on disk: watched while written, OS errors named, exit 2."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import orjson
import pytest
from helpers import SimFactory, make_jobs, run_config

from watcher._engine import Hooks, watch
from watcher._errors import LedgerError
from watcher._inputs import Job
from watcher._manifest import JobResult, SavedFile
from watcher.cli import main

OLD = b'{"job_id":"job-old","status":"FAILED","finished_at":"2026-11-25T02:00:00Z","meta":{"p":"'
OLD_LINE = OLD + b"x" * (4096 - len(OLD) - 4) + b'"}}\n'  # one whole tmpfs page: no room after


async def _items(jobs: list[Job]) -> AsyncIterator[Job]:
    for job in jobs:
        yield job


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["deleted", "replaced", "out removed"])
async def test_a_manifest_deleted_or_replaced_mid_run_stops_it(
    sim_factory: SimFactory, tmp_path: Path, how: str
) -> None:
    """Once the first line is written the manifest is removed (or swapped for another file, or
    the whole --out is removed): the run stops with a LedgerError saying what was lost and that
    a rerun resumes."""
    jobs = make_jobs(3)
    sim = sim_factory(jobs)
    out = tmp_path / "out"
    manifest = out / "manifest.jsonl"

    async def on_result(result: JobResult) -> None:
        if how == "deleted":
            manifest.unlink(missing_ok=True)
        elif how == "out removed":
            shutil.rmtree(out, ignore_errors=True)
        elif not (tmp_path / "swapped").exists():
            (tmp_path / "swapped").write_bytes(b"")
            os.replace(tmp_path / "swapped", manifest)

    expected = "replaced" if how == "replaced" else "deleted or moved"
    with pytest.raises(LedgerError, match=f"{expected} while the run went on") as caught:
        await watch(run_config(sim.url, out), _items(jobs), hooks=Hooks(on_result=on_result))
    assert "run the same command again to resume" in str(caught.value)
    assert str(manifest) in str(caught.value)


def test_a_manifest_on_stdout_has_absolute_paths(tmp_path: Path) -> None:
    """With no manifest folder to be relative to (`--manifest -`), paths are written absolute."""
    saved = SavedFile(str(tmp_path / "a.wav"), 1, "0" * 64)
    record = orjson.loads(JobResult("a", "SUCCEED", files={"audio": saved}).to_json(None))
    assert record["files"]["audio"]["path"] == str(tmp_path / "a.wav")


def _run(tmp_path: Path, url: str, *args: str, quiet: bool = True) -> int:
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("".join(f"job-{i:03d}\n" for i in range(3)))
    # --quiet prints no end table; the console format prints it as text, not a JSON event
    shown = ["--quiet"] if quiet else ["--log-format", "console", "--log-level", "warning"]
    return main(["run", str(jobs), "--endpoint", url, *shown, "--cadence", "0.02", *args])


@pytest.mark.usefixtures("env")
def test_out_that_is_a_file_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out naming a file: one line naming the path, exit 2, no traceback."""
    (tmp_path / "out").write_text("not a folder")
    assert _run(tmp_path, "http://127.0.0.1:9", "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'out'}: not a folder" in err and "Traceback" not in err


@pytest.mark.usefixtures("env")
def test_manifest_that_is_a_folder_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--manifest naming a folder: one line naming the path, exit 2."""
    (tmp_path / "m").mkdir()
    code = _run(tmp_path, "http://127.0.0.1:9", "--out", str(tmp_path / "out"), "--manifest",
                str(tmp_path / "m"))  # fmt: skip
    assert code == 2
    assert f"--manifest {tmp_path / 'm'}: is a folder" in capsys.readouterr().err


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount small tmpfs file systems (root only); each is unmounted at the end, whatever
    happened. Skips when this process may not mount."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        done = subprocess.run(  # noqa: S603
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)  # noqa: S603, S607


@pytest.mark.usefixtures("env")
def test_a_read_only_out_is_exit_2_naming_it(
    tmpfs: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out on a read-only file system: exit 2 with the path and the OS's reason."""
    readonly = tmpfs("ro,size=1m")
    assert _run(tmp_path, "http://127.0.0.1:9", "--out", str(readonly)) == 2
    err = capsys.readouterr().err
    assert str(readonly) in err and "Read-only file system" in err and "Traceback" not in err


@pytest.mark.usefixtures("env")
def test_a_full_manifest_disk_is_exit_2_and_keeps_what_was_recorded(
    tmpfs: Callable[[str], Path],
    sim_factory: SimFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The manifest's file system is full: exit 2 naming it and "No space left on device";
    the lines recorded before are still there."""
    sim = sim_factory(make_jobs(3), fail_percent=0)
    full = tmpfs("size=64k")
    manifest = full / "manifest.jsonl"
    manifest.write_bytes(OLD_LINE)
    with (full / "filler").open("wb", buffering=0) as filler:
        for size in (4096, 1):
            try:
                while True:
                    filler.write(b"\0" * size)
            except OSError:
                pass
    code = _run(tmp_path, sim.url, "--out", str(tmp_path / "out"), "--manifest", str(manifest))
    assert code == 2
    err = capsys.readouterr().err
    assert f"manifest {manifest}: cannot write: No space left on device" in err
    assert "Traceback" not in err
    assert manifest.read_bytes() == OLD_LINE


@pytest.mark.usefixtures("env")
def test_a_rerun_exits_by_the_whole_batch_not_by_what_it_did(
    sim_factory: SimFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch with FAILED jobs exits 1, and so does the same command again (it watches
    nothing), its table showing the batch's totals beside this run's zeros."""
    sim = sim_factory(make_jobs(3), fail_percent=100)
    out = str(tmp_path / "out")
    assert _run(tmp_path, sim.url, "--out", out) == 1
    capsys.readouterr()
    assert _run(tmp_path, sim.url, "--out", out, quiet=False) == 1
    err = capsys.readouterr().err
    assert "  FAILED                    3         0" in err
    assert "skipped as already done               3" in err


@pytest.mark.usefixtures("env")
def test_a_rerun_of_a_finished_batch_exits_0(
    sim_factory: SimFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every job SUCCEED with its files intact: the rerun exits 0 having watched nothing."""
    sim = sim_factory(make_jobs(3), fail_percent=0)
    out = str(tmp_path / "out")
    assert _run(tmp_path, sim.url, "--out", out) == 0
    assert _run(tmp_path, sim.url, "--out", out, quiet=False) == 0
    err = capsys.readouterr().err
    assert "  SUCCEED                   3         0" in err
