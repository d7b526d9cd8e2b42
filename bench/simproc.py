"""The bundled simulator in its own process, like `watcher sim`, that also dumps its job timings.

    python bench/simproc.py --dump times.json --preload jobs.jsonl [--time-scale ...] ...

Preloads the jobs (their synthesis times are fixed at that moment, `watcher.sim.jobs`), writes
`{job_id: [create_time, start, end]}` to `--dump` with `start`/`end` turned from the simulator's
monotonic clock into wall-clock epoch seconds, then prints its URL as the first stdout line and
serves until SIGINT/SIGTERM. The benchmark of finish-to-seen delays needs those end times from
the process that serves the jobs; otherwise this is `watcher sim` (same `SimConfig`, same app).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import anyio

from watcher._auth import AkSk
from watcher.sim import SimConfig, Simulator, serve
from watcher.sim.cli import read_preload


async def _serve(config: SimConfig, sim: Simulator, host: str, port: int) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with serve(config, host=host, port=port, sim=sim) as running:
            print(running.url, flush=True)
            async for _ in signals:
                break


def main() -> int:
    """Parse flags, preload, dump, serve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--preload", required=True)
    parser.add_argument("--dump", required=True)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--fail-percent", type=int, default=10)
    parser.add_argument("--rate-limit", type=float, default=None)
    parser.add_argument("--random-order", action="store_true")
    args = parser.parse_args()
    config = SimConfig(
        project_id=os.environ["HUAWEICLOUD_SDK_PROJECT_ID"],
        credentials=AkSk(os.environ["HUAWEICLOUD_SDK_AK"], os.environ["HUAWEICLOUD_SDK_SK"]),
        time_scale=args.time_scale,
        slots=args.slots,
        fail_percent=args.fail_percent,
        rate_limit=args.rate_limit,
        random_order=args.random_order,
    )
    sim = Simulator(config)
    jobs = read_preload(args.preload, sys.stderr)
    sim.preload(jobs)
    offset = time.time() - time.monotonic()  # monotonic -> wall clock, read back to back
    times: dict[str, list[float]] = {}
    for job in jobs:
        simjob = sim.jobs.get(job.job_id)
        assert simjob is not None
        times[job.job_id] = [simjob.create_time, simjob.start + offset, simjob.end + offset]
    Path(args.dump).write_text(json.dumps(times))
    print(f"simproc: {len(times)} jobs preloaded", file=sys.stderr, flush=True)
    anyio.run(_serve, config, sim, args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
