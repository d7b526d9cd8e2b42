"""The polling benchmarks of issue 4, in one run: `make bench`.

    .venv/bin/python bench/bench_all.py [--quick] [--only NAME ...] [--single-cap S]

NAME is one of rate (1: single / list / auto under a 10 requests/s limit), overhead (2: CPU per poll
and RSS against the official SDK), scale (3: 1,000 to 100,000 ids on stdin), download (4: MB/s
against curl --parallel), resume (5: the rerun check of 100,000 finished jobs), shards (6: N
shards against one process under one limit) and batches (7: 20,000 queued jobs, in creation and
in random order, beside the ideal uniform poller; not in the default run, ~11 minutes); each is also
runnable on its own (`bench/bench_NAME.py`), and each module's docstring says what it measures and
how. `--quick` runs small sizes (a smoke test of a few minutes). The tables are printed to stdout as
they complete (progress goes to stderr) and saved, with the command line, the commit and the
machine, to bench/out/polling/results-<time>.md. The full run takes about 20 minutes on 2 cores,
most of it benchmark 1's single-GET run (capped at 600 s by default).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable

import bench_batches
import bench_download
import bench_overhead
import bench_rate
import bench_resume
import bench_scale
import bench_shards
import bench_workers
from common import OUT, ROOT, log, machine_note

NAMES = ("rate", "overhead", "scale", "download", "workers", "resume", "shards", "batches")
DEFAULT = NAMES[:-1]  # batches only when asked for


def commit() -> str:
    """The checked-out commit, and whether the tree has changes (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" with uncommitted changes" if dirty else "")


def main() -> int:
    """Run the chosen benchmarks in order; print and save their tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only", action="append", choices=NAMES, metavar="NAME", help=f"one of {NAMES}"
    )
    parser.add_argument(
        "--single-cap",
        type=float,
        help="benchmark 1: stop the single-GET run after S s (0: never; default 600, quick: none)",
    )
    args = parser.parse_args()
    chosen = args.only or list(DEFAULT)
    runners: dict[str, Callable[[], str]] = {
        "rate": lambda: bench_rate.run(args.quick, args.single_cap),
        "overhead": lambda: bench_overhead.run(args.quick),
        "scale": lambda: bench_scale.run(args.quick),
        "download": lambda: bench_download.run(args.quick),
        "workers": lambda: bench_workers.run(quick=args.quick),
        "resume": lambda: bench_resume.run(args.quick),
        "shards": lambda: bench_shards.run(args.quick),
        "batches": lambda: bench_batches.run(args.quick),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    saved = OUT / f"results-{stamp}.md"
    header = (
        f"# bench_all {' '.join(sys.argv[1:])}\n\n- commit {commit()}; {machine_note()}\n"
        f"- started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n\n"
    )
    saved.write_text(header)
    print(header, flush=True)
    failed = []
    for name in NAMES:
        if name not in chosen:
            continue
        started = time.monotonic()
        log(f"{name}: starting")
        try:
            text = runners[name]()
        except Exception as exc:  # report it, run the others
            failed.append(name)
            text = f"**{name} FAILED**: {exc.__class__.__name__}: {exc}\n"
        text += f"\n_({name}: {time.monotonic() - started:.0f} s)_\n\n"
        print(text, flush=True)
        with saved.open("a") as f:
            f.write(text)
    log(f"saved {saved}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
