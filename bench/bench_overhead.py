"""Benchmark 2 (issue 4): CPU per poll and peak RSS, the watcher against the official SDK.

What it measures: 20,000 jobs (2,000 with `--quick`, N with `--jobs N`) preloaded into `watcher
sim` (its own process, no rate limit, `--time-scale 1000`, the most it accepts: no job finishes
during the run) are polled by

- the watcher: `watcher run IDS --poll single --rate 10000 --cadence 3` (a subprocess;
  10,000, the most `--rate` accepts, paces at 9,000/s: above what one process reaches),
- the same on uvloop (`WATCHER_LOOP=uvloop`, through `watcher._loop.run`: the launcher below
  stands in for the command's wiring until `watcher run` calls it), when uvloop is installed,
- the baseline a user would otherwise write: the official SDK in a ThreadPoolExecutor(32)
  (`bench/sdk_poller.py`, a subprocess with HOME in a temp dir),

one after the other against the same simulator, in a mirrored order (watcher, uvloop, SDK,
SDK, uvloop, watcher: none always goes first), `--repeats` times (once each, unmirrored, with
`--quick`). All poll as fast as the simulator answers: 20,000 jobs at a 3 s cadence would need
6,667 requests/s. With `--jobs 2700` every client that keeps up polls 900 times a second (each
job once per cadence), so CPU per poll is compared at the same load: on a busy machine a client
that falls behind batches more work per loop turn and its CPU per poll changes with it.

How: after a warm-up (1,000 polls answered, at least 2 s), a steady-state window of 15 s (4 s
with `--quick`): CPU = utime + stime of the client process from /proc/PID/stat at both ends
(all threads), polls = ShowAsyncTtsJob answers counted by the simulator (`GET /_sim/stats`) over
the same window, so startup (interpreter, imports) is left out. Peak RSS: /proc/PID/status
VmHWM just before SIGINT; `os.wait4` then gives the whole run's CPU (startup included), shown
too. The simulator's own CPU over the window is shown to tell whether it was the bottleneck.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import (
    OUT,
    PYTHON,
    ROOT,
    Sim,
    child_env,
    cpu_seconds,
    fmt,
    fresh_dir,
    log,
    proc_status_mb,
    reap,
    simulator,
    spawn,
    stop,
    table,
    watcher_cmd,
    write_lines,
)

WARM_POLLS = 1000
WARM_S = 2.0
# `watcher` as `python -m watcher`, but with the command's anyio.run going through
# watcher._loop.run (which reads WATCHER_LOOP): what wiring it into the commands will do
ON_LOOP = (
    "import sys, types, anyio\n"
    "from watcher import _loop, cli\n"
    "proxy = types.ModuleType('anyio')\n"
    "proxy.__dict__.update(vars(anyio))\n"
    "proxy.run = _loop.run\n"
    "cli.anyio = proxy\n"
    "raise SystemExit(cli.main(sys.argv[1:]))\n"
)
LABELS = {
    "watcher": "watcher (aiohttp, 64 in flight, asyncio loop)",
    "uvloop": "watcher (aiohttp, 64 in flight, uvloop)",
    "sdk": "official SDK, ThreadPoolExecutor(32)",
}


@dataclass(frozen=True, slots=True)
class Measured:
    """One client's run."""

    client: str
    window_s: float
    window_polls: int
    window_cpu_s: float
    sim_cpu_s: float
    total_polls: int
    total_cpu_s: float
    peak_rss_mb: float
    exit_code: int

    @property
    def cpu_per_1000(self) -> float:
        """CPU seconds per 1,000 polls in the steady-state window."""
        return 1000 * self.window_cpu_s / max(self.window_polls, 1)

    @property
    def total_per_1000(self) -> float:
        """CPU seconds per 1,000 polls over the whole run, startup included."""
        return 1000 * self.total_cpu_s / max(self.total_polls, 1)


def measure(
    sim: Sim, client: str, cmd: list[str], env: dict[str, str], window_s: float, logfile: Path
) -> Measured:
    """Run one client until warm, measure a window, stop it with SIGINT."""
    base = sim.count("ShowAsyncTtsJob")
    with logfile.open("wb") as err:
        proc = spawn(cmd, env=env, stderr=err, stdout=err)
        try:
            deadline = time.monotonic() + 120
            started = time.monotonic()
            while sim.count("ShowAsyncTtsJob") - base < WARM_POLLS or (
                time.monotonic() - started < WARM_S
            ):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{client} did not warm up; see {logfile}")
                time.sleep(0.2)
            sim_pid = sim.proc.pid
            t0, c0, s0, n0 = (
                time.monotonic(),
                cpu_seconds(proc.pid),
                cpu_seconds(sim_pid),
                sim.count("ShowAsyncTtsJob"),
            )
            time.sleep(window_s)
            t1, c1, s1, n1 = (
                time.monotonic(),
                cpu_seconds(proc.pid),
                cpu_seconds(sim_pid),
                sim.count("ShowAsyncTtsJob"),
            )
            hwm = proc_status_mb(proc.pid, "VmHWM")
            ended = reap(proc, 30.0)
        finally:
            stop(proc)
    total = sim.count("ShowAsyncTtsJob") - base
    return Measured(
        client=client,
        window_s=t1 - t0,
        window_polls=n1 - n0,
        window_cpu_s=c1 - c0,
        sim_cpu_s=s1 - s0,
        total_polls=total,
        total_cpu_s=ended.cpu_s,
        peak_rss_mb=hwm,
        exit_code=ended.code,
    )


def run(quick: bool = False, repeats: int = 1, jobs: int | None = None) -> str:
    """Run benchmark 2 and return its table (Markdown)."""
    jobs = jobs or (2000 if quick else 20_000)
    window = 4.0 if quick else 15.0
    work = fresh_dir(OUT / "overhead")
    rng = random.Random(2)
    ids = write_lines(work / "ids.txt", (f"{rng.getrandbits(128):032x}" for _ in range(jobs)))
    clients = ["watcher", "uvloop", "sdk"]
    if importlib.util.find_spec("uvloop") is None:
        log("overhead: uvloop is not installed: the watcher runs on asyncio's loop only")
        clients.remove("uvloop")
    order = clients if quick else (clients + clients[::-1]) * repeats
    results: list[Measured] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-sdk-home-") as home,
        simulator(["--preload", str(ids), "--time-scale", "1000"], work / "sim.log") as sim,
    ):
        log(f"overhead: {jobs} jobs at {sim.url}")
        for i, client in enumerate(order):
            if client in ("watcher", "uvloop"):
                out = fresh_dir(work / f"out-{i}")
                cmd = watcher_cmd(
                    sim.url, out, "--poll", "single", "--rate", "10000", "--cadence", "3", str(ids)
                )
                if client == "uvloop":
                    cmd = [PYTHON, "-c", ON_LOOP, *cmd[3:]]  # in place of `python -m watcher`
                env = child_env(**({"WATCHER_LOOP": "uvloop"} if client == "uvloop" else {}))
            else:
                cmd = [PYTHON, str(ROOT / "bench" / "sdk_poller.py"), "--endpoint", sim.url]
                cmd += ["--ids", str(ids), "--threads", "32"]
                env = child_env(HOME=home)
            m = measure(sim, client, cmd, env, window, work / f"{client}-{i}.log")
            log(f"overhead/{client}: {m.cpu_per_1000:.3f} CPU s per 1000 polls")
            results.append(m)
    return report(jobs, results)


def report(jobs: int, results: list[Measured]) -> str:
    """The table and the verdict."""
    rows = []
    for m in results:
        rows.append(
            [
                LABELS[m.client],
                fmt(m.window_polls),
                fmt(m.window_polls / m.window_s, 0),
                fmt(m.cpu_per_1000, 3),
                fmt(100 * m.window_cpu_s / m.window_s, 0),
                fmt(100 * m.sim_cpu_s / m.window_s, 0),
                fmt(m.total_per_1000, 3),
                fmt(m.peak_rss_mb, 1),
                str(m.exit_code),
            ]
        )

    def avg(client: str) -> float:
        picked = [m for m in results if m.client == client]
        return sum(m.window_cpu_s for m in picked) / max(sum(m.window_polls for m in picked), 1)

    ratio = avg("sdk") / avg("watcher")
    on_uvloop = any(m.client == "uvloop" for m in results)
    text = table(
        f"Benchmark 2 - overhead: {jobs:,} jobs that never finish, no rate limit, simulator in"
        " its own process",
        [
            "client",
            "polls in window",
            "polls/s",
            "CPU s / 1000 polls",
            "client CPU %",
            "sim CPU %",
            "incl. startup CPU s / 1000",
            "peak RSS MB",
            "exit",
        ],
        rows,
    )
    verdict = "MET" if ratio >= 5 else "MISSED"
    text += (
        f"\n- CPU per poll, SDK / watcher (window totals pooled over the runs): {ratio:.2f}x;"
        f" target >= 5x -> {verdict}\n"
        f"- watcher {1000 * avg('watcher'):.3f} vs SDK {1000 * avg('sdk'):.3f} CPU s per 1,000"
        " polls\n"
    )
    if on_uvloop:
        uv = avg("sdk") / avg("uvloop")
        text += (
            f"- on uvloop: {1000 * avg('uvloop'):.3f} CPU s per 1,000 polls, SDK / watcher"
            f" {uv:.2f}x -> {'MET' if uv >= 5 else 'MISSED'}; uvloop / asyncio loop"
            f" {avg('uvloop') / avg('watcher'):.2f}x the CPU per poll\n"
        )
    return text


def main() -> int:
    """`python bench/bench_overhead.py [--quick] [--repeats N] [--jobs N]`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, 4 s windows")
    parser.add_argument("--repeats", type=int, default=1, help="mirrored rounds (default 1)")
    parser.add_argument(
        "--jobs",
        type=int,
        help="jobs to poll (20,000; 2,000 quick): 2,700 paces every client at 900 polls/s"
        " (each job once per 3 s cadence) if it keeps up, which compares CPU at equal load",
    )
    args = parser.parse_args()
    print(run(args.quick, args.repeats, args.jobs), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
