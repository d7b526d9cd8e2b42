"""Benchmark 3 (issue 4): 1,000, 10,000 and 100,000 job ids piped into `watcher run`.

What it measures, for each size (1,000 and 10,000 with `--quick`): the time to admit every id
read from stdin, the peak RSS, and the CPU per poll once every id is admitted, to show how each
grows with the number of jobs. Two series:

- `single`: `watcher run - --poll single --rate 300 --cadence 3`. The rate is the same at every
  size and below what 1,000 jobs need at the cadence (333/s), so every size polls at the same
  300 requests/s and the CPU per poll compares like with like. Admission competes with polling.
- `auto`: `watcher run -` with the defaults (`--poll auto --rate 10`), what a user would run:
  admission time and peak RSS only (at 10 requests/s there is too little polling to measure).

The ids are preloaded into one `watcher sim` (its own process, `--time-scale 1000`, no rate
limit) so every poll is a real 200 answer (WAITING/PROCESSING) and no job ends during the run;
each size uses the first N of them.

How: the ids are written to the watcher's stdin pipe (1 MiB, non-blocking writes), which is
then left open (closing it would end the input). Admission is complete when every byte is written
and the pipe is empty (`ioctl(FIONREAD)` on our end of the pipe reads 0): the watcher reads
stdin in 64 KiB chunks and admits a chunk's ids before reading the next, so at that moment at
most the last chunk (~2,000 ids, milliseconds of work) is still being admitted. The time is
measured from spawning the process, so it includes interpreter start-up (the 1,000-id row is
mostly that); the "marginal" column is (t(N) - t(1,000)) / (N - 1,000). Then stdin is closed
(end of input; the watcher keeps polling) and, 2 s later, a steady window of 10 s (4 s with
`--quick`) gives CPU (/proc/PID/stat) per poll (ShowAsyncTtsJob answers counted by the
simulator). Peak RSS is /proc/PID/status VmHWM at the end, just before SIGINT. (stdin is closed
before SIGINT on purpose: `watcher run -` does not exit on SIGINT/SIGTERM while its stdin stays
open, see RESULTS-polling.md.) An admission that takes longer than the cap (180 s; 60 s with
`--quick`) is stopped and reported with the share of ids admitted by then.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import fcntl
import os
import random
import select
import subprocess
import termios
import time
from dataclasses import dataclass
from pathlib import Path

from common import (
    OUT,
    Sim,
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

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
SINGLE_RATE = 300
SETTLE_S = 2.0


@dataclass(frozen=True, slots=True)
class Point:
    """One run at one size."""

    series: str
    jobs: int
    admit_s: float | None  # None: not all admitted within the cap
    admitted_share: float
    admit_cpu_s: float
    rss_after_admit_mb: float
    window_polls: int
    window_cpu_s: float
    window_s: float
    peak_rss_mb: float
    exit_code: int

    @property
    def cpu_ms_per_poll(self) -> float:
        """Milliseconds of CPU per poll in the steady window (NaN without polls)."""
        if not self.window_polls:
            return float("nan")
        return 1000 * self.window_cpu_s / self.window_polls


class Feeder:
    """Writes `data` into a pipe without blocking (`pump`), counting bytes; leaves it open."""

    def __init__(self, proc: subprocess.Popen[bytes], data: bytes) -> None:
        assert proc.stdin is not None
        self._pipe = proc.stdin
        self._fd = proc.stdin.fileno()
        os.set_blocking(self._fd, False)
        with contextlib.suppress(OSError):  # a bigger pipe: fewer round trips, same meaning
            fcntl.fcntl(self._fd, F_SETPIPE_SZ, 1 << 20)
        self._data = memoryview(data)
        self.written = 0

    def pump(self, timeout: float) -> None:
        """Write what the pipe takes now, waiting at most `timeout` s for room."""
        if self.done:
            time.sleep(timeout)
            return
        _, ready, _ = select.select([], [self._fd], [], timeout)
        if ready:
            with contextlib.suppress(BlockingIOError):
                self.written += os.write(self._fd, self._data[self.written :])

    @property
    def done(self) -> bool:
        """Every byte written."""
        return self.written == len(self._data)

    def unread(self) -> int:
        """Bytes sitting in the pipe, not yet read by the watcher."""
        buf = array.array("i", [0])
        fcntl.ioctl(self._fd, termios.FIONREAD, buf)
        return buf[0]

    def close(self) -> None:
        """Close our end: end of input for the watcher."""
        if not self._pipe.closed:
            with contextlib.suppress(OSError):
                self._pipe.close()


def measure(
    sim: Sim,
    series: str,
    ids: list[str],
    args: list[str],
    window_s: float,
    cap_s: float,
    work: Path,
) -> Point:
    """One `watcher run -` with `len(ids)` ids on stdin; see the module docstring."""
    data = "".join(f"{i}\n" for i in ids).encode()
    n = len(ids)
    out = fresh_dir(work / f"out-{series}-{n}")
    with (work / f"watcher-{series}-{n}.log").open("wb") as err:
        started = time.monotonic()
        proc = spawn(watcher_cmd(sim.url, out, *args, "-"), stdin=subprocess.PIPE, stderr=err)
        feeder = Feeder(proc, data)
        try:
            admit_s: float | None = None
            while time.monotonic() - started < cap_s:
                if proc.poll() is not None:
                    raise RuntimeError(f"watcher exited early ({proc.returncode}); see {err.name}")
                if feeder.done and feeder.unread() == 0:
                    admit_s = time.monotonic() - started
                    break
                feeder.pump(0.005)
            consumed = feeder.written - feeder.unread()
            admit_cpu = cpu_seconds(proc.pid)
            rss_admit = proc_status_mb(proc.pid, "VmRSS")
            feeder.close()  # end of input: the watcher keeps polling what it admitted
            polls = 0
            cpu = 0.0
            t = 0.0
            if admit_s is not None and window_s > 0:
                time.sleep(SETTLE_S)
                t0, c0, n0 = time.monotonic(), cpu_seconds(proc.pid), sim.count("ShowAsyncTtsJob")
                time.sleep(window_s)
                t1, c1, n1 = time.monotonic(), cpu_seconds(proc.pid), sim.count("ShowAsyncTtsJob")
                polls, cpu, t = n1 - n0, c1 - c0, t1 - t0
            hwm = proc_status_mb(proc.pid, "VmHWM")
            ended = reap(proc, 30.0)
        finally:
            feeder.close()
            stop(proc)
    return Point(
        series=series,
        jobs=n,
        admit_s=admit_s,
        admitted_share=consumed / len(data),
        admit_cpu_s=admit_cpu,
        rss_after_admit_mb=rss_admit,
        window_polls=polls,
        window_cpu_s=cpu,
        window_s=t,
        peak_rss_mb=hwm,
        exit_code=ended.code,
    )


def run(quick: bool = False) -> str:
    """Run benchmark 3 and return its tables (Markdown)."""
    sizes = [1000, 10_000] if quick else [1000, 10_000, 100_000]
    window = 4.0 if quick else 10.0
    cap = 60.0 if quick else 180.0
    work = fresh_dir(OUT / "scale")
    rng = random.Random(3)
    ids = [f"{rng.getrandbits(128):032x}" for _ in range(max(sizes))]
    preload = write_lines(work / "ids.txt", ids)
    points: list[Point] = []
    sim_args = ["--preload", str(preload), "--time-scale", "1000"]
    with simulator(sim_args, work / "sim.log") as sim:
        log(f"scale: {len(ids)} ids preloaded at {sim.url}")
        for n in sizes:
            args = ["--poll", "single", "--rate", str(SINGLE_RATE), "--cadence", "3"]
            points.append(measure(sim, "single", ids[:n], args, window, cap, work))
            log(f"scale/single/{n}: {points[-1]}")
        for n in sizes:
            points.append(measure(sim, "auto", ids[:n], [], 0.0, cap, work))
            log(f"scale/auto/{n}: {points[-1]}")
    return report(points, cap)


def report(points: list[Point], cap: float) -> str:
    """The tables and the verdicts."""
    text = ""
    for series, title in (
        (
            "single",
            f"--poll single --rate {SINGLE_RATE} --cadence 3 (same poll rate at every size)",
        ),
        ("auto", "defaults: --poll auto --rate 10 (admission and memory only)"),
    ):
        picked = [p for p in points if p.series == series]
        base = picked[0]
        rows = []
        for p in picked:
            marginal = "-"
            if p is not base and p.admit_s is not None and base.admit_s is not None:
                per_k = 1000 * (p.admit_s - base.admit_s) / (p.jobs - base.jobs)
                marginal = f"{1000 * per_k:,.1f} ms"
            admit = (
                f"{p.admit_s:.2f}"
                if p.admit_s is not None
                else f"> {cap:.0f} (only {100 * p.admitted_share:.0f}% read)"
            )
            row = [
                fmt(p.jobs),
                admit,
                marginal,
                fmt(p.admit_cpu_s, 2),
                fmt(p.rss_after_admit_mb, 1),
                fmt(p.peak_rss_mb, 1),
            ]
            if series == "single":
                row += [
                    fmt(p.window_polls / p.window_s if p.window_s else float("nan"), 0),
                    fmt(p.cpu_ms_per_poll, 3),
                ]
            rows.append(row)
        headers = [
            "jobs",
            "admit all s (from spawn)",
            "marginal per 1,000 ids",
            "CPU s by then",
            "RSS after admit MB",
            "peak RSS MB",
        ]
        if series == "single":
            headers += ["polls/s", "CPU ms / poll"]
        text += table(f"Benchmark 3 - scale, {title}", headers, rows) + "\n"
    singles = {p.jobs: p for p in points if p.series == "single"}
    autos = {p.jobs: p for p in points if p.series == "auto"}
    top = max(singles)
    small = singles[min(singles)]
    big = singles[top]
    growth = big.cpu_ms_per_poll / small.cpu_ms_per_poll
    rss_ok = max(big.peak_rss_mb, autos[top].peak_rss_mb) < 300
    text += (
        f"- target: {top:,} jobs under 300 MB peak RSS: single {big.peak_rss_mb:.0f} MB, auto"
        f" {autos[top].peak_rss_mb:.0f} MB -> " + ("MET" if rss_ok else "MISSED") + "\n"
        f"- target: per-poll cost flat: {small.cpu_ms_per_poll:.3f} ms at {small.jobs:,} jobs,"
        f" {big.cpu_ms_per_poll:.3f} ms at {top:,} ({growth:.2f}x) -> "
        + ("MET" if growth <= 1.25 else "MISSED")
        + " (flat taken as within 1.25x)\n"
    )
    slow = [p for p in autos.values() if p.admit_s is None]
    if slow or (autos[top].admit_s or 0) > 5 * (singles[top].admit_s or 1):
        text += (
            "- admission under --poll auto grows much faster than under --poll single: see"
            " RESULTS-polling.md (profile)\n"
        )
    return text


def main() -> int:
    """`python bench/bench_scale.py [--quick]`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 jobs")
    args = parser.parse_args()
    print(run(args.quick), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
