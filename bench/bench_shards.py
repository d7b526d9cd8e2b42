"""Benchmark 6 (issue 13): N shards against one process, on the same batch, under one limit.

What it measures: the queued batch of benchmark 1 (scenario A: jobs queued on a few synthesis
slots, finishing over ~120 s; `--quick`: 300 jobs over ~20 s), preloaded into ONE simulator that
allows 10 requests/s per API for the whole tenant, watched either by one `watcher run --rate 10`
or by N `watcher run --shard K/N --rate 10` processes at once (each paces at 10/N, as the docs
tell users to run them). For each: makespan (first spawn to last exit), API requests, 429s, and
the delay from each job finishing in the simulator to its shard seeing it (mean, p99, max).

Why: every shard's list sweep pages through the whole creation-time window (the list call can't
filter by shard), so N shards read every page N times at 1/N of the rate each: a sweep takes N
times longer and the per-job cadence stretches by about N. This puts a number on it for the
Kubernetes guide.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench_rate import CADENCE, FAIL_PERCENT, FULL, QUICK, RATE, TIME_SCALE, scenarios
from common import (
    OUT,
    PYTHON,
    ROOT,
    fmt,
    fresh_dir,
    log,
    mean,
    percentile,
    read_manifest,
    reap,
    simulator,
    spawn,
    table,
    wait_exit,
    watcher_cmd,
)


@dataclass(slots=True)
class ShardRun:
    """One configuration's run: `shards` processes sharing one simulator."""

    shards: int
    wall_s: float = 0.0
    exit_codes: list[int | None] = field(default_factory=list)
    lines: int = 0
    unique: int = 0
    requests: int = 0
    throttled: int = 0
    delays: list[float] = field(default_factory=list)
    last_end_s: float = 0.0


def run_shards(shards: int, work: Path, quick: bool) -> ShardRun:
    """One simulator, `shards` watcher processes (1: no --shard), measured."""
    size = QUICK if quick else FULL
    queued, _ = scenarios(size, work)
    result = ShardRun(shards)
    dump = work / f"times-{shards}.json"
    sim_args = [
        *("--preload", str(queued.jobs_file), "--dump", str(dump)),
        *("--time-scale", str(TIME_SCALE), "--slots", str(queued.slots)),
        *("--fail-percent", str(FAIL_PERCENT), "--rate-limit", str(RATE)),
    ]
    runner = [PYTHON, str(ROOT / "bench" / "simproc.py")]
    cap = 6 * size.span_s + 240
    outs = [fresh_dir(work / f"out-{shards}-{k}") for k in range(shards)]
    with simulator(sim_args, work / f"sim-{shards}.log", runner=runner) as sim:
        times: dict[str, list[float]] = json.loads(dump.read_text())
        started = time.time()
        procs = []
        try:
            for k, out in enumerate(outs):
                args = ["--poll", "auto", "--rate", str(RATE), "--cadence", str(CADENCE)]
                if shards > 1:
                    args += ["--shard", f"{k}/{shards}"]
                err = (work / f"watcher-{shards}-{k}.log").open("wb")
                procs.append(
                    spawn(watcher_cmd(sim.url, out, *args, str(queued.jobs_file)), stderr=err)
                )
                err.close()
            deadline = started + cap
            for proc in procs:
                wait_exit(proc, max(1.0, deadline - time.time()))
            result.wall_s = time.time() - started
        finally:
            for proc in procs:
                result.exit_codes.append(reap(proc, 30.0).code)
        stats = sim.stats()
    requests, statuses = stats["requests"], stats["statuses"]
    apis = ("ShowAsyncTtsJob", "ShowTtsJob")
    result.requests = sum(int(requests.get(api, 0)) for api in apis)
    result.throttled = sum(int(statuses.get(f"{api} 429", 0)) for api in apis)
    seen_ids: set[str] = set()
    for out in outs:
        for line in read_manifest(out / "manifest.jsonl"):
            result.lines += 1
            job_id = line.get("job_id")
            if isinstance(job_id, str):
                seen_ids.add(job_id)
                if line.get("finished_at") and job_id in times:
                    seen = datetime.fromisoformat(line["finished_at"]).timestamp()
                    result.delays.append(seen - times[job_id][2])
        shutil.rmtree(out, ignore_errors=True)
    result.unique = len(seen_ids)
    result.last_end_s = max(times[j][2] for j, _ in queued.jobs) - started
    log(f"shards/{shards}: {result.unique} jobs in {result.wall_s:.1f} s")
    return result


def report(runs: list[ShardRun], jobs: int) -> str:
    """The side-by-side table, ratios against the single process."""
    base = runs[0]
    rows = []
    for r in runs:
        mean_delay = mean(r.delays)
        rows.append(
            [
                "1 process" if r.shards == 1 else f"{r.shards} shards",
                f"{r.unique:,}/{jobs:,}",
                fmt(r.wall_s, 1),
                fmt(r.last_end_s, 1),
                f"{r.requests:,}",
                f"{r.throttled:,}",
                fmt(mean_delay),
                fmt(percentile(r.delays, 99)),
                fmt(max(r.delays, default=float("nan"))),
                fmt(mean_delay / mean(base.delays)),
            ]
        )
    return table(
        f"Benchmark 6: {jobs:,} queued jobs, one simulator limited to {RATE:g} requests/s per "
        "API, one process vs N shards (each --rate 10 --shard K/N)",
        [
            "watchers",
            "jobs final",
            "makespan s",
            "last job end s",
            "requests",
            "429s",
            "mean delay s",
            "p99 delay s",
            "max delay s",
            "mean delay vs 1",
        ],
        rows,
    )


def run(quick: bool = False, counts: tuple[int, ...] = (1, 2, 4)) -> str:
    """Run one process and each shard count in turn; return the table."""
    work = fresh_dir(OUT / "shards")
    runs = [run_shards(n, work, quick) for n in counts]
    return report(runs, (QUICK if quick else FULL).jobs)


def main() -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="300 jobs over ~20 s")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    print(run(args.quick, tuple(args.shards)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
