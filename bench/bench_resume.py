"""Benchmark 5 (issue 8): the resume check of a rerun over 100,000 finished SUCCEED jobs.

What it measures: a batch of 100,000 jobs (10,000 with `--quick`), each SUCCEED with one small
file (64 bytes), written to a manifest in a temporary folder by the watcher's own writer (so
every line has its size and `mtime_ns`). The rerun's input is those jobs plus one new job last;
the figure is the time from reading the manifest back (`ledger.recover`) to the new job coming
out of `resume.unsettled` (every finished job checked and skipped): how long the resume check
holds back the first poll. Once with the cheap check (a `stat` per file), once with `--verify`
(the sha256 of every file). Input parsing and the HTTP start-up are not included: the input is a
list of Jobs. The files sit in the system's temporary folder (often tmpfs or a warm page cache),
so `--verify` here is the CPU cost of hashing, the best case; on a cold disk it reads every byte.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from common import log, machine_note, table

from watcher._errors import InputError
from watcher._inputs import Job
from watcher._ledger import recover
from watcher._manifest import JobResult, ManifestFile, SavedFile
from watcher._resume import ResumeStats, unsettled

BODY = b"RIFF" + b"\0" * 60


def build(folder: Path, n: int) -> list[Job]:
    """`n` SUCCEED jobs with one file each, and their manifest; the jobs."""
    digest = hashlib.sha256(BODY).hexdigest()
    jobs, results = [], []
    for i in range(n):
        job_id = f"job-{i:06d}"
        path = folder / f"{job_id}.wav"
        path.write_bytes(BODY)
        jobs.append(Job(job_id, {}))
        results.append(
            JobResult(job_id, "SUCCEED", files={"audio": SavedFile(str(path), len(BODY), digest)})
        )
    manifest = ManifestFile(folder / "manifest.jsonl")
    for start in range(0, n, 4096):
        manifest.append(results[start : start + 4096], durable=False)
    manifest.close()
    return jobs


async def _check(manifest: Path, jobs: list[Job], verify: bool) -> tuple[float, ResumeStats]:
    async def inputs() -> AsyncIterator[Job | InputError]:
        for job in jobs:
            yield job
        yield Job("job-new", {})

    started = time.perf_counter()
    ledger = recover(manifest)
    stats = ResumeStats()
    async for item in unsettled(inputs(), ledger, retry_failed=False, stats=stats, verify=verify):
        assert isinstance(item, Job) and item.job_id == "job-new", item
    return time.perf_counter() - started, stats


def run(quick: bool = False) -> str:
    """Run benchmark 5 and return its table (Markdown)."""
    n = 10_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        folder = Path(tmp)
        log(f"resume: writing {n:,} files and their manifest in {folder}")
        jobs = build(folder, n)
        rows, seconds = [], {}
        for verify in (False, True):
            elapsed, stats = anyio.run(_check, folder / "manifest.jsonl", jobs, verify)
            assert stats.skipped == n, stats
            name = "--verify (sha256)" if verify else "cheap (size + mtime)"
            seconds[verify] = elapsed
            rows.append([name, f"{n:,}", f"{elapsed:.2f}", f"{elapsed / n * 1e6:.1f}"])
            log(f"resume/{name}: {elapsed:.2f} s")
    text = table(
        f"Resume check: {n:,} SUCCEED jobs, manifest read to first new job out",
        ["check", "jobs", "seconds", "µs per job"],
        rows,
    )
    return text + f"\n--verify / cheap: {seconds[True] / seconds[False]:.1f}x\n"


def main() -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="10,000 jobs instead of 100,000")
    args = parser.parse_args()
    print(machine_note() + "\n")
    print(run(args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
