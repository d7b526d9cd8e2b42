"""Benchmark 4 (issue 4): download throughput, the watcher against `curl --parallel`.

What it measures: MB/s saving the result files of 2,000 jobs with ~200 KB of audio each (text
length 78: 199,724-byte WAV) and, separately, of 50 jobs with ~20 MB each (7,813 characters:
20,000,324 bytes), plus each job's subtitle and timestamp files (and action file, one job in
four), from the simulator's storage route. With `--quick`: 100 and 3 jobs.

How: one `watcher sim` (its own process, `--time-scale 0` so every job has SUCCEEDed from the
start, `--fail-percent 0`, no rate limit) serves both. For each group, alternately (watcher,
curl, curl, watcher; once each with `--quick`):

- watcher: `watcher run GROUP.jsonl --poll list --rate 100` (list sweeps at 100 requests/s, so
  finding the 2,000 links takes 0.2 s and polling never holds the downloads up), 8 download
  workers (the default). Timed from the first `job succeeded` log line (the first link in hand)
  to the process's exit (every file saved, renamed, hashed and in the fsynced manifest); the
  column "incl. startup" times it from the spawn. Bytes: the manifest's file sizes.
- curl 7.88: `curl --parallel --parallel-max 8 --fail --config LINKS` with one `url`/`output`
  pair per file, for the same files: links read with ShowAsyncTtsJob (`watcher._client`)
  just before, valid for an hour. Timed from spawn to exit. Bytes: the files on disk.

Each pass writes into an empty folder; the folder is deleted and `sync` run between passes so
neither inherits the other's dirty pages. Everything is done twice: writing to the disk
(bench/out, ext4 on this VM) and writing to tmpfs (/dev/shm), because on this VM the kernel's
cost of creating and writing files on ext4 swings by 5x from one minute to the next (curl alone,
same 6,484 files: 0.96 s, then 2.49 s, then 2.30 s, all of the difference in system time); tmpfs
takes that noise out and leaves the clients' own cost. The simulator serves both from the
same 2-core machine, so both compete with it for the CPUs alike; its CPU share is shown. CPU
shares cover the timed interval (the watcher's CPU is sampled from /proc every 20 ms to find its
value at the first link; the end values come from `os.wait4`).

Under a realistic link (issue 12): `--latency S` gives the simulator's storage a first-byte
latency of S seconds (`watcher sim --storage-latency`) and `--bandwidth B` a cap of B bytes a
second per connection; `--parallel 8,16,32` runs, for each concurrency N, the watcher with
`--download-workers N`, `curl --parallel --parallel-max N` and `aria2c -j N` (1.36, `-i` a list
of links, `--file-allocation=none`, one connection per file), once each, in that order (with
`--repeat R`, R rounds, round r starting with the r-th tool, so that none always goes first or
last; the verdicts pool each tool's rounds and give the spread of the per-round ratios).
`--only 200KB|20MB` and `--to disk|tmpfs` run one group or one destination. The table also has
CPU ms per saved file, the storage requests the simulator answered during each pass (every tool
must fetch each file once: the same count) and the most TCP connections open to the simulator
at once (sampled every 10 ms from /proc/net/tcp; the watcher's API connection counts too), which
shows that a tool really ran N transfers at a time: the watcher saves N jobs at a time, each
job's files one after another, so with fewer jobs than N (the `--quick` 20 MB group: 3 jobs) it
opens fewer connections than curl and aria2c do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import aiohttp
import anyio
from common import (
    BENCH_ENV,
    OUT,
    Sim,
    cpu_seconds,
    fmt,
    fresh_dir,
    log,
    read_manifest,
    reap,
    simulator,
    spawn,
    table,
    wait_exit,
    watcher_cmd,
    write_lines,
)
from yarl import URL

from watcher._auth import AkSk
from watcher._client import MetaStudioClient
from watcher._config import ApiConfig

CURL = "/usr/bin/curl"
ARIA2C = "/usr/bin/aria2c"
PARALLEL = 8
SMALL_CHARS = 78  # 78 x 0.08 s x 32,000 B/s = 199,680 bytes of samples + 44 of header
LARGE_CHARS = 7813  # 20,000,280 bytes of samples + 44
PASS_TIMEOUT_S = 900.0
SHM = Path("/dev/shm/bench-polling-download")  # noqa: S108 - our own folder, removed after


class Connections:
    """Samples, every 10 ms in a thread while the block runs, how many established TCP
    connections have `port` (the simulator's) as their far end; `peak` is the most seen. The
    watcher's few API connections count too (it polls the same simulator)."""

    def __init__(self, port: int) -> None:
        self._port = f"{port:04X}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak = 0

    def _count(self) -> int:
        count = 0
        for table_path in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError), open(table_path) as f:
                next(f, None)
                for row in f:
                    fields = row.split(None, 4)
                    if fields[3] == "01" and fields[2].rsplit(":", 1)[1] == self._port:
                        count += 1
        return count

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._count())

    def __enter__(self) -> Connections:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass(frozen=True, slots=True)
class Pass:
    """One timed download of a whole group."""

    tool: str  # CPU figures cover the timed `seconds` (watcher: sampled every 20 ms)
    files: int
    bytes: int
    seconds: float
    seconds_from_spawn: float
    first_link_s: float | None  # watcher: spawn to its first `job succeeded`
    client_cpu_s: float
    sim_cpu_s: float
    exit_code: int
    requests: int = 0  # storage requests the simulator answered during the pass
    connections: int = 0  # most TCP connections open to the simulator at once (API included)

    @property
    def mb_s(self) -> float:
        """Throughput in MB/s (10^6 bytes)."""
        return self.bytes / 1e6 / self.seconds


async def _links(url: str, job_ids: list[str]) -> dict[str, dict[str, str]]:
    creds = AkSk(BENCH_ENV["HUAWEICLOUD_SDK_AK"], BENCH_ENV["HUAWEICLOUD_SDK_SK"])
    config = ApiConfig(url, BENCH_ENV["HUAWEICLOUD_SDK_PROJECT_ID"], creds)
    links: dict[str, dict[str, str]] = {}
    limiter = anyio.Semaphore(16)
    async with aiohttp.ClientSession() as session:
        client = MetaStudioClient(config, session)

        async def one(job_id: str) -> None:
            async with limiter:
                status = await client.show_job(job_id)
            if status.state != "SUCCEED":
                raise RuntimeError(f"{job_id} is {status.state}, not SUCCEED")
            links[job_id] = dict(status.links)

        async with anyio.create_task_group() as tg:
            for job_id in job_ids:
                tg.start_soon(one, job_id)
    return links


def watcher_pass(
    sim: Sim, jobs_file: Path, out: Path, logfile: Path, workers: int = PARALLEL
) -> Pass:
    """`watcher run` on the group; see the module docstring."""
    args = ["--poll", "list", "--rate", "100", "--download-workers", str(workers)]
    args += ["--log-level", "debug", str(jobs_file)]  # "job succeeded on the API" is debug
    with logfile.open("wb") as err:
        spawned = time.time()
        sim0 = cpu_seconds(sim.proc.pid)
        proc = spawn(watcher_cmd(sim.url, out, *args), stderr=err)
        finished = False
        samples: list[tuple[float, float, float]] = []  # (wall time, watcher CPU, sim CPU)
        try:
            deadline = time.monotonic() + PASS_TIMEOUT_S
            while not (finished := wait_exit(proc, 0.0)) and time.monotonic() < deadline:
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    samples.append((time.time(), cpu_seconds(proc.pid), cpu_seconds(sim.proc.pid)))
                time.sleep(0.02)
            if not finished:
                raise RuntimeError(f"watcher did not finish within {PASS_TIMEOUT_S:g} s")
            ended_at = time.time()
            sim1 = cpu_seconds(sim.proc.pid)
        finally:
            ended = reap(proc, 30.0, sig=None if finished else signal.SIGINT)
    first = None
    for raw in logfile.read_text(errors="replace").splitlines():
        if raw.startswith("{") and '"job succeeded' in raw:
            stamp = json.loads(raw)["timestamp"]
            first = datetime.fromisoformat(stamp).timestamp()
            break
    if first is None:
        raise RuntimeError(f"no 'job succeeded' line in {logfile}")
    before = [x for x in samples if x[0] <= first] or samples[:1] or [(spawned, 0.0, sim0)]
    _, watcher_at_first, sim_at_first = before[-1]
    lines = read_manifest(out / "manifest.jsonl")
    saved = [f for line in lines for f in line.get("files", {}).values()]
    if any(line["status"] != "SUCCEED" for line in lines):
        raise RuntimeError(f"watcher pass: not every job SUCCEEDed; see {out}")
    return Pass(
        tool="watcher",
        files=len(saved),
        bytes=sum(int(f["bytes"]) for f in saved),
        seconds=ended_at - first,
        seconds_from_spawn=ended_at - spawned,
        first_link_s=first - spawned,
        client_cpu_s=ended.cpu_s - watcher_at_first,
        sim_cpu_s=sim1 - sim_at_first,
        exit_code=ended.code,
    )


def curl_pass(
    sim: Sim, links: dict[str, dict[str, str]], out: Path, work: Path, parallel: int = PARALLEL
) -> Pass:
    """`curl --parallel` on the same files; see the module docstring."""
    config = work / "curl.cfg"
    entries = []
    for job_links in links.values():
        for url in job_links.values():
            name = URL(url).path.rsplit("/", 2)
            entries.append(f'url = "{url}"\noutput = "{out / f"{name[-2]}-{name[-1]}"}"\n')
    config.write_text("".join(entries))
    cmd = [CURL, "--parallel", "--parallel-max", str(parallel), "--fail", "--silent"]
    cmd += ["--show-error", "--config", str(config)]
    return _tool_pass("curl", cmd, sim, out, work, len(entries))


def aria2c_pass(
    sim: Sim, links: dict[str, dict[str, str]], out: Path, work: Path, parallel: int = PARALLEL
) -> Pass:
    """`aria2c -j N` on the same files; see the module docstring."""
    listing = work / "aria2c.txt"
    entries = []
    for job_links in links.values():
        for url in job_links.values():
            name = URL(url).path.rsplit("/", 2)
            entries.append(f"{url}\n  dir={out}\n  out={name[-2]}-{name[-1]}\n")
    listing.write_text("".join(entries))
    cmd = [ARIA2C, "-i", str(listing), "-j", str(parallel), "--max-connection-per-server=1"]
    cmd += ["--file-allocation=none", "--auto-file-renaming=false", "--allow-overwrite=true"]
    cmd += ["--console-log-level=warn", "--summary-interval=0", "--quiet=true"]
    return _tool_pass("aria2c", cmd, sim, out, work, len(entries))


def _tool_pass(tool: str, cmd: list[str], sim: Sim, out: Path, work: Path, count: int) -> Pass:
    """Run a download tool to its exit, timed from spawn; it must save `count` files."""
    with (work / f"{tool}.log").open("ab") as err:
        spawned = time.time()
        sim0 = cpu_seconds(sim.proc.pid)
        proc = spawn(cmd, stderr=err)
        finished = False
        try:
            finished = wait_exit(proc, PASS_TIMEOUT_S)
            if not finished:
                raise RuntimeError(f"{tool} did not finish within {PASS_TIMEOUT_S:g} s")
            ended_at = time.time()
            sim1 = cpu_seconds(sim.proc.pid)
        finally:
            ended = reap(proc, 30.0, sig=None if finished else signal.SIGINT)
    files = [p for p in out.iterdir() if p.is_file()]
    if ended.code != 0 or len(files) != count:
        raise RuntimeError(f"{tool} exit {ended.code}, {len(files)} of {count} files")
    return Pass(
        tool=tool,
        files=len(files),
        bytes=sum(p.stat().st_size for p in files),
        seconds=ended_at - spawned,
        seconds_from_spawn=ended_at - spawned,
        first_link_s=None,
        client_cpu_s=ended.cpu_s,
        sim_cpu_s=sim1 - sim0,
        exit_code=ended.code,
    )


def run(
    quick: bool = False,
    latency: float = 0.0,
    bandwidth: float | None = None,
    parallel: tuple[int, ...] = (),
    only: str | None = None,
    to: str | None = None,
    repeat: int = 1,
) -> str:
    """Run benchmark 4 and return its table (Markdown); `latency`, `bandwidth`, `parallel`: see
    the module docstring (none: the original watcher-vs-curl passes at 8). `only` one group
    ("200KB" or "20MB"), `to` one destination ("disk" or "tmpfs"); `repeat`: the whole order
    of passes that many times over, round after round, so every tool sees the same noise
    (with `parallel`, round r starts with the r-th tool)."""
    groups = {"200 KB": (100 if quick else 2000, SMALL_CHARS)}
    groups["20 MB"] = (3 if quick else 50, LARGE_CHARS)
    if only is not None:
        groups = {g: v for g, v in groups.items() if g.replace(" ", "") == only}
    order: list[tuple[str, int]] = [("watcher", PARALLEL), ("curl", PARALLEL)]
    if not quick:
        order += [("curl", PARALLEL), ("watcher", PARALLEL)]
    rounds = [order] * repeat
    if parallel:  # each round starts with the next tool, so none always goes first
        tools = ("watcher", "curl", "aria2c")
        rounds = [
            [(tool, n) for n in parallel for tool in tools[r % 3 :] + tools[: r % 3]]
            for r in range(repeat)
        ]
    order = [step for steps in rounds for step in steps]
    work = fresh_dir(OUT / "download")
    rng = random.Random(5)
    files: dict[str, Path] = {}
    everything = []
    for group, (count, chars) in groups.items():
        jobs = [(f"{rng.getrandbits(128):032x}", chars) for _ in range(count)]
        everything += jobs
        files[group] = write_lines(
            work / f"jobs-{group.replace(' ', '')}.jsonl",
            (json.dumps({"job_id": j, "text_length": n}) for j, n in jobs),
        )
    preload = write_lines(
        work / "preload.jsonl",
        (json.dumps({"job_id": j, "text_length": n}) for j, n in everything),
    )
    passes: dict[tuple[str, str], list[Pass]] = {}
    sim_args = ["--preload", str(preload), "--time-scale", "0", "--fail-percent", "0"]
    sim_args += ["--storage-latency", str(latency)]
    if bandwidth is not None:
        sim_args += ["--storage-bandwidth", str(bandwidth)]
    dests = [("disk", work / "out")]
    if SHM.parent.is_dir() and shutil.disk_usage(SHM.parent).free > 3e9:
        dests.append(("tmpfs", SHM))
    if to is not None:
        dests = [(name, path) for name, path in dests if name == to]
    try:
        with simulator(sim_args, work / "sim.log") as sim:
            for dest, out in dests:
                for group, jobs_file in files.items():
                    lines = jobs_file.read_text().splitlines()
                    links = anyio.run(_links, sim.url, [json.loads(x)["job_id"] for x in lines])
                    passes[group, dest] = []
                    for i, (tool, n) in enumerate(order):
                        fresh_dir(out)
                        os.sync()
                        asked = sim.count("Storage")
                        with Connections(URL(sim.url).port or 80) as connections:
                            if tool == "watcher":
                                slug = f"{group.replace(' ', '')}-{dest}-{i}"
                                logfile = work / f"watcher-{slug}.log"
                                p = watcher_pass(sim, jobs_file, out, logfile, n)
                            elif tool == "curl":
                                p = curl_pass(sim, links, out, work, n)
                            else:
                                p = aria2c_pass(sim, links, out, work, n)
                        requests = sim.count("Storage") - asked
                        p = replace(
                            p,
                            tool=f"{tool} x{n}",
                            requests=requests,
                            connections=connections.peak,
                        )
                        passes[group, dest].append(p)
                        log(
                            f"download/{group}/{dest}/{p.tool}: {p.mb_s:.1f} MB/s ({p.files} files)"
                        )
                        shutil.rmtree(out, ignore_errors=True)
                        os.sync()
    finally:
        shutil.rmtree(SHM, ignore_errors=True)
    link = f"storage first-byte latency {latency * 1000:g} ms" + (
        "" if bandwidth is None else f", {bandwidth / 1e6:g} MB/s per connection"
    )
    return report(groups, passes, link)


def report(
    groups: dict[str, tuple[int, int]],
    passes: dict[tuple[str, str], list[Pass]],
    link: str = "loopback",
) -> str:
    """The table and the verdicts."""
    rows = []
    verdicts = []
    for (group, dest), done in passes.items():
        count = groups[group][0]
        for p in done:
            rows.append(
                [
                    f"{count:,} x {group}",
                    dest,
                    p.tool,
                    fmt(p.files),
                    fmt(p.bytes / 1e6, 1),
                    fmt(p.seconds, 2),
                    fmt(p.mb_s, 1),
                    fmt(p.bytes / 1e6 / p.seconds_from_spawn, 1),
                    fmt(p.first_link_s, 2),
                    fmt(100 * p.client_cpu_s / p.seconds, 0),
                    fmt(100 * p.sim_cpu_s / p.seconds, 0),
                    fmt(1000 * p.client_cpu_s / p.files, 2),
                    fmt(p.requests),
                    fmt(p.connections),
                ]
            )
        sizes = {p.bytes for p in done}
        if len(sizes) != 1:
            verdicts.append(f"PROBLEM: {group}: the passes saved different byte counts {sizes}")

        def pooled(tool: str, timed: str, done: list[Pass] = done) -> float:
            picked = [p for p in done if p.tool == tool]
            seconds = sum(float(getattr(p, timed)) for p in picked)
            return sum(p.bytes for p in picked) / 1e6 / seconds

        def cpu_ms(tool: str, done: list[Pass] = done) -> float:
            picked = [p for p in done if p.tool == tool]
            return 1000 * sum(p.client_cpu_s for p in picked) / sum(p.files for p in picked)

        ns = sorted({int(p.tool.rsplit("x", 1)[1]) for p in done})
        for n in ns:
            ours = f"watcher x{n}"
            for other in (f"curl x{n}", f"aria2c x{n}"):
                if not any(p.tool == other for p in done):
                    continue
                ratio = pooled(ours, "seconds") / pooled(other, "seconds")
                ratio_spawn = pooled(ours, "seconds_from_spawn") / pooled(other, "seconds")
                rounds = [
                    a.mb_s / b.mb_s
                    for a, b in zip(
                        [p for p in done if p.tool == ours],
                        [p for p in done if p.tool == other],
                        strict=False,
                    )
                ]
                spread = f", rounds {min(rounds):.2f}-{max(rounds):.2f}x" if len(rounds) > 1 else ""
                verdicts.append(
                    f"{group} to {dest}, {n} at a time: watcher {pooled(ours, 'seconds'):.1f}"
                    f" MB/s ({cpu_ms(ours):.2f} CPU ms/file) vs {other}"
                    f" {pooled(other, 'seconds'):.1f} MB/s ({cpu_ms(other):.2f}) = {ratio:.2f}x"
                    f"{spread} (from spawn: {ratio_spawn:.2f}x); target >= 1.0x -> "
                    + ("MET" if ratio >= 1.0 else "MISSED")
                )
    text = table(
        f"Benchmark 4 - downloads from the simulator's storage ({link})",
        [
            "group",
            "written to",
            "tool",
            "files",
            "MB",
            "seconds",
            "MB/s",
            "MB/s incl. startup",
            "spawn to 1st link s",
            "client CPU %",
            "sim CPU %",
            "client CPU ms/file",
            "storage requests",
            "peak connections",
        ],
        rows,
    )
    return text + "\n" + "\n".join(f"- {v}" for v in verdicts) + "\n"


def main() -> int:
    """`python bench/bench_download.py [--quick]`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="100 x 200 KB and 3 x 20 MB")
    parser.add_argument("--latency", type=float, default=0.0, help="storage first-byte latency s")
    parser.add_argument("--bandwidth", type=float, help="storage bytes/s per connection")
    parser.add_argument(
        "--parallel", default="", help="concurrencies to compare, e.g. 8,16,32 (adds aria2c)"
    )
    parser.add_argument("--only", choices=("200KB", "20MB"), help="one group of files only")
    parser.add_argument("--to", choices=("disk", "tmpfs"), help="one destination only")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the whole order")
    args = parser.parse_args()
    parallel = tuple(int(n) for n in args.parallel.split(",") if n)
    text = run(args.quick, args.latency, args.bandwidth, parallel, args.only, args.to, args.repeat)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
