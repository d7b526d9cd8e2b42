"""Benchmark 4c (issue 12): what the number of download workers costs the polling.

Scenario B of benchmark 1 (5,000 jobs that all finish within ~12 s, so 15,000 files to fetch at
once, on loopback, with the simulator on the same machine): the downloads are CPU-bound and share
the watcher's one event loop with the polling. Runs `watcher run --poll auto` with
`WATCHER_DOWNLOAD_WORKERS` set to each N given, alternating, `--rounds` times, and prints the
makespan, the requests, and the delay from each job's end in the simulator to the watcher seeing
it (mean, p99, max). Under a real link's latency downloads are bound by the link instead
(benchmark 4b, `bench_download.py`); this is the other side of choosing the default.
"""

from __future__ import annotations

import argparse
import statistics

import bench_rate
from common import OUT, child_env, fresh_dir, log


def run(workers: tuple[int, ...] = (8, 16, 32), rounds: int = 2, quick: bool = False) -> str:
    """The table, one row per run, in run order (`quick`: benchmark 1's 300 jobs, one round)."""
    work = fresh_dir(OUT / "workers")
    _, at_once = bench_rate.scenarios(bench_rate.QUICK if quick else bench_rate.FULL, work)
    rounds = 1 if quick else rounds
    rows = [
        "| download workers | makespan s | requests GET + list | delay mean / p99 / max s |",
        "|---|---|---|---|",
    ]
    for round_ in range(rounds):
        for n in workers:
            env = child_env(WATCHER_DOWNLOAD_WORKERS=str(n))
            variant = f"-w{n}-r{round_}"
            result = bench_rate.run_mode(at_once, "auto", work, 240.0, variant=variant, env=env)
            delays = sorted(result.delays)
            mean, p99 = statistics.mean(delays), delays[int(len(delays) * 0.99)]
            log(f"workers/{variant}: {result.wall_s:.1f} s, mean delay {mean:.2f} s")
            rows.append(
                f"| {n} | {result.wall_s:.1f} | {result.single_requests} + {result.list_requests}"
                f" | {mean:.2f} / {p99:.2f} / {delays[-1]:.2f} |"
            )
    return "\n".join(rows)


def main() -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workers", default="8,16,32", help="comma-separated N (8,16,32)")
    parser.add_argument("--rounds", type=int, default=2, help="times each N runs (2)")
    args = parser.parse_args()
    print(run(tuple(int(n) for n in args.workers.split(",")), args.rounds), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
