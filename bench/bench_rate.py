"""Benchmark 1 (issue 4): `--poll single`, `list` and `auto` under a real rate limit.

What it measures: 5,000 jobs (300 with `--quick`) preloaded into a simulator that allows 10
requests/s per API (429 APIGW.0308 above that), watched by `watcher run JOBS --poll MODE --rate 10
--cadence 3`. For each mode: makespan (watcher spawn to exit, downloads included), API requests
per job (ShowAsyncTtsJob + ShowTtsJob answered by the simulator, 429s included), and the delay
from each job finishing in the simulator to the watcher seeing it (manifest `finished_at` minus
the job's end), mean and p99; plus lost, duplicated or wrongly-ended jobs.

How: each mode gets its own simulator process (`bench/simproc.py`, which is `watcher sim` plus a
dump of every job's end time, converted from the simulator's monotonic clock to wall-clock time)
and its own watcher process. Job durations are spread: text lengths 1-78 characters give
(2 + 0.05 x chars) x time_scale 2 = 4-12 s of synthesis each, and the simulator synthesises
`slots` jobs at a time, chosen so the batch drains over about 120 s (20 s with `--quick`):
finishes are spread from ~4 s to ~120 s after the start and ~10% of jobs end FAILED. The single
run, which needs >= 5,000 / 10 = 500 s, runs in parallel with the list and auto runs (one after
the other), so the benchmark takes about as long as the single run; the three pairs of processes
are independent (separate simulators, separate rate limits) and mostly idle at 10 requests/s.
`--single-cap S` stops the single run after S s (SIGINT) and reports what it achieved and a
projected makespan.

Bounds, per mode:
- makespan >= max(last job's end after the watcher started, minimum requests / rate), where the
  minimum is one ShowAsyncTtsJob per job (single) or one ShowTtsJob page per 100 jobs (list,
  auto); requests/job >= 1 (single) or 0.01 (list, auto);
- "ideal": a model of a perfect blind poller with the same rate and cadence that is never
  throttled, has zero latency and zero startup, and knows nothing of the end times: for single,
  one GET every 1/rate s to the most overdue unfinished job, none more often than the cadence;
  for list and auto, sweeps of ceil(window / 100) pages at 1/rate s per page, no more often
  than the cadence, where the window holds every job created between the earliest and latest
  unfinished one (the list call returns finished jobs too). Its mean and p99 delays are what
  a blind poller cannot beat on average at this rate and cadence; its makespan and requests
  are a reference, not a proof.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import math
import random
import shutil
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

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
    write_lines,
)

from watcher.sim.jobs import id_hash, synthesis_seconds

RATE = 10.0
CADENCE = 3.0
TIME_SCALE = 2.0
MAX_CHARS = 78
FAIL_PERCENT = 10
PAGE = 100
MODES = ("single", "list", "auto")


@dataclass(frozen=True, slots=True)
class Size:
    """How big a run is."""

    jobs: int
    span_s: float  # the simulator drains the batch over about this long


FULL = Size(5000, 120.0)
QUICK = Size(300, 20.0)


@dataclass(slots=True)
class Model:
    """What the ideal blind poller achieves (times relative to the watcher's start)."""

    makespan: float
    requests: int
    delays: list[float]


@dataclass(slots=True)
class ModeResult:
    """One mode's run."""

    mode: str
    jobs: int
    capped: bool = False
    wall_s: float = 0.0
    exit_code: int | None = None
    lines: int = 0
    unique: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    mismatched: int = 0
    requests: int = 0
    single_requests: int = 0
    list_requests: int = 0
    throttled: int = 0
    delays: list[float] = field(default_factory=list)
    last_end_s: float = 0.0
    summary_line: str = ""
    achieved_line: str = ""
    model: Model | None = None
    ends: list[float] = field(default_factory=list)
    creates: list[float] = field(default_factory=list)

    @property
    def model_in(self) -> tuple[list[float], list[float]]:
        """End times (relative to the watcher's start) and creation times, in creation order."""
        return self.ends, self.creates

    @property
    def lost(self) -> int:
        """Jobs without a manifest line (only meaningful for a run that was not capped)."""
        return self.jobs - self.unique

    @property
    def duplicates(self) -> int:
        """Manifest lines beyond one per job."""
        return self.lines - self.unique

    @property
    def min_requests(self) -> float:
        """The fewest requests that can read every job once."""
        return self.jobs if self.mode == "single" else math.ceil(self.jobs / PAGE)

    @property
    def makespan_bound(self) -> float:
        """Makespan lower bound (see the module docstring)."""
        return max(self.last_end_s, self.min_requests / RATE)


def make_jobs(n: int, seed: int) -> list[tuple[str, int]]:
    """`n` (job id, text length) pairs: 32-hex ids, lengths 1-MAX_CHARS, both seeded."""
    rng = random.Random(seed)
    return [(f"{rng.getrandbits(128):032x}", rng.randint(1, MAX_CHARS)) for _ in range(n)]


def slots_for(jobs: list[tuple[str, int]], span_s: float) -> int:
    """Synthesis slots that drain the batch in about `span_s` seconds."""
    work = sum(synthesis_seconds(length) * TIME_SCALE for _, length in jobs)
    return max(1, math.ceil(work / span_s))


def model_single(ends: list[float]) -> Model:
    """The ideal single-GET poller (module docstring); `ends` relative to its start."""
    heap = [(0.0, i) for i in range(len(ends))]
    t, requests, delays, last = 0.0, 0, [], 0.0
    while heap:
        due, i = heapq.heappop(heap)
        t = max(t, due)
        requests += 1
        if ends[i] <= t:
            delays.append(t - ends[i])
            last = t
        else:
            heapq.heappush(heap, (t + CADENCE, i))
        t += 1 / RATE
    return Model(last, requests, delays)


def model_list(ends: list[float], creates: list[float], cadence: float = CADENCE) -> Model:
    """The ideal list-sweep poller (module docstring), sweeping at most every `cadence` s; jobs
    in creation order."""
    keys = [int(c) for c in creates]
    pending = set(range(len(ends)))
    t, requests, delays, last = 0.0, 0, [], 0.0
    for _ in range(1_000_000):
        if not pending:
            break
        start = t
        lo = bisect.bisect_left(keys, min(keys[i] for i in pending) - 1)
        hi = bisect.bisect_right(keys, max(keys[i] for i in pending) + 1)
        offset = 0
        while True:  # pages newest first, as the simulator (and the real API) serves them
            top = hi - offset
            requests += 1
            for k in range(max(lo, top - PAGE), top):
                if k in pending and ends[k] <= t:
                    pending.discard(k)
                    delays.append(t - ends[k])
                    last = t
            t += 1 / RATE
            offset += PAGE
            if offset >= hi - lo:
                break
        t = max(t, start + cadence)
    return Model(last, requests, delays)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A batch: its jobs (in creation order) and how many the simulator synthesises at once."""

    name: str
    label: str
    jobs: list[tuple[str, int]]
    slots: int
    jobs_file: Path
    random_order: bool = False  # the simulator synthesises them in a random order


def run_mode(
    scenario: Scenario,
    mode: str,
    work: Path,
    cap_s: float,
    watcher_rate: float = RATE,
    *,
    variant: str = "",
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> ModeResult:
    """One simulator + one `watcher run --poll MODE`, measured; see the module docstring.
    `variant` tells apart runs of the same scenario and mode; `env`, `cwd`: the watcher's."""
    jobs = scenario.jobs
    result = ModeResult(mode, len(jobs))
    tag = f"{scenario.name}-{mode}{variant}"
    dump = work / f"times-{tag}.json"
    out = fresh_dir(work / f"out-{tag}")
    sim_args = [
        *("--preload", str(scenario.jobs_file), "--dump", str(dump)),
        *("--time-scale", str(TIME_SCALE), "--slots", str(scenario.slots)),
        *("--fail-percent", str(FAIL_PERCENT), "--rate-limit", str(RATE)),
        *(("--random-order",) if scenario.random_order else ()),
    ]
    runner = [PYTHON, str(ROOT / "bench" / "simproc.py")]
    watcher_log = work / f"watcher-{tag}.log"
    args = ["--poll", mode, "--rate", str(watcher_rate), "--cadence", str(CADENCE)]
    with (
        simulator(sim_args, work / f"sim-{tag}.log", runner=runner) as sim,
        watcher_log.open("wb") as err,
    ):
        times: dict[str, list[float]] = json.loads(dump.read_text())
        started = time.time()
        proc = spawn(
            watcher_cmd(sim.url, out, *args, str(scenario.jobs_file)), stderr=err, env=env, cwd=cwd
        )
        try:
            result.capped = not wait_exit(proc, cap_s)
            result.wall_s = time.time() - started
            if result.capped:
                log(f"rate/{tag}: capped at {cap_s:g} s, stopping the watcher with SIGINT")
        finally:
            ended = reap(proc, 30.0, sig=signal.SIGINT if result.capped else None)
        result.exit_code = ended.code
        stats = sim.stats()
    requests, statuses = stats["requests"], stats["statuses"]
    result.single_requests = int(requests.get("ShowAsyncTtsJob", 0))
    result.list_requests = int(requests.get("ShowTtsJob", 0))
    result.requests = result.single_requests + result.list_requests
    result.throttled = sum(
        int(statuses.get(f"{api} 429", 0)) for api in ("ShowAsyncTtsJob", "ShowTtsJob")
    )
    lines = read_manifest(out / "manifest.jsonl")
    shutil.copy(out / "manifest.jsonl", work / f"manifest-{tag}.jsonl")
    shutil.rmtree(out, ignore_errors=True)  # up to ~0.5 GB of audio per run
    result.lines = len(lines)
    result.unique = len({line["job_id"] for line in lines})
    ids = [job_id for job_id, _ in jobs]
    result.last_end_s = max(times[j][2] for j in ids) - started
    for line in lines:
        job_id, status = line["job_id"], line["status"]
        result.statuses[status] += 1
        expected = "FAILED" if id_hash(job_id, "fail") % 100 < FAIL_PERCENT else "SUCCEED"
        result.mismatched += status != expected
        if line.get("finished_at") and job_id in times:
            seen = datetime.fromisoformat(line["finished_at"]).timestamp()
            result.delays.append(seen - times[job_id][2])
    for raw in watcher_log.read_text(errors="replace").splitlines():
        if raw.startswith("API requests") or raw.startswith("watcher:"):
            result.summary_line = " ".join(raw.split())
        if "polling achieved" in raw:
            result.achieved_line = " ".join(raw.split())
    result.ends = [times[j][2] - started for j in ids]
    result.creates = [times[j][0] for j in ids]
    result.model = model_single(result.ends) if mode == "single" else model_list(*result.model_in)
    log(f"rate/{tag}: {result.unique} final in {result.wall_s:.1f} s, {result.requests} requests")
    return result


def scenarios(size: Size, work: Path) -> tuple[Scenario, Scenario]:
    """A: queued on few slots, draining over `size.span_s`; B: every job starts at once."""
    jobs = make_jobs(size.jobs, seed=4)
    jobs_file = write_lines(
        work / "jobs.jsonl", (json.dumps({"job_id": j, "text_length": n}) for j, n in jobs)
    )
    slots = slots_for(jobs, size.span_s)
    queued = Scenario(
        "A",
        f"A: {size.jobs:,} jobs queued on {slots} synthesis slots (4-12 s each), finishing"
        f" over ~{size.span_s:.0f} s",
        jobs,
        slots,
        jobs_file,
    )
    at_once = Scenario(
        "B",
        f"B: {size.jobs:,} jobs all synthesised at once (4-12 s each), finishing over ~12 s",
        jobs,
        size.jobs,
        jobs_file,
    )
    return queued, at_once


def run(quick: bool = False, single_cap: float | None = None, watcher_rate: float = RATE) -> str:
    """Run benchmark 1 and return its tables (Markdown). `single_cap`: None for the default
    (600 s full, none quick), 0 for no cap. `watcher_rate`: the watcher's --rate (default: the
    simulator's limit, as a user would set it)."""
    size = QUICK if quick else FULL
    work = fresh_dir(OUT / "rate")
    queued, at_once = scenarios(size, work)
    uncapped = 2 * size.jobs / RATE * 2 + 3 * size.span_s + 120
    if single_cap is None:
        single_cap = uncapped if quick else 600.0
    cap_single = single_cap or uncapped
    cap_other = 4 * size.span_s + 120
    log(f"rate: {size.jobs} jobs; single (cap {cap_single:.0f} s) runs beside the others")
    results: dict[str, ModeResult] = {}
    errors: list[BaseException] = []

    def single() -> None:
        try:
            results["A-single"] = run_mode(queued, "single", work, cap_single, watcher_rate)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    thread = threading.Thread(target=single, name="bench-rate-single")
    thread.start()
    try:
        for scenario, mode in (
            (queued, "list"),
            (queued, "auto"),
            (at_once, "list"),
            (at_once, "auto"),
        ):
            results[f"{scenario.name}-{mode}"] = run_mode(
                scenario, mode, work, cap_other, watcher_rate
            )
    finally:
        thread.join(cap_single + 120)
    if errors:
        raise errors[0]
    if "A-single" not in results:
        raise RuntimeError("the single run did not finish")
    text = report(size, queued, at_once, results)
    if watcher_rate != RATE:
        text += f"- NOTE: the watcher ran with --rate {watcher_rate:g}, not {RATE:g}\n"
    return text


def _rows(label: str, r: ModeResult) -> tuple[list[str], list[str]]:
    assert r.model is not None
    m = r.model
    measured = [
        label,
        f"{r.unique:,}/{r.jobs:,}",
        "n/a (capped)" if r.capped else fmt(r.lost),
        fmt(r.duplicates),
        fmt(r.mismatched),
        f"{r.wall_s:.1f}" + (" (capped)" if r.capped else ""),
        f"{r.single_requests:,} + {r.list_requests:,}",
        fmt(r.requests / r.jobs, 3),
        fmt(r.throttled),
        fmt(mean(r.delays)),
        fmt(percentile(r.delays, 99)),
    ]
    versus = [
        label,
        fmt(r.makespan_bound, 1),
        "-" if r.capped else fmt(r.wall_s / r.makespan_bound),
        fmt(r.min_requests / r.jobs, 3),
        fmt(m.makespan, 1),
        fmt(m.requests / r.jobs, 3),
        fmt(mean(m.delays)),
        fmt(percentile(m.delays, 99)),
        "-" if r.capped else fmt(mean(r.delays) / mean(m.delays)),
        "-" if r.capped else fmt(percentile(r.delays, 99) / percentile(m.delays, 99)),
    ]
    return measured, versus


def report(size: Size, queued: Scenario, at_once: Scenario, results: dict[str, ModeResult]) -> str:
    """The tables and the verdicts."""
    measured, versus = [], []
    order = ("A-single", "A-list", "A-auto", "B-list", "B-auto")
    results = {tag: results[tag] for tag in order if tag in results}
    for tag, r in results.items():
        a, b = _rows(tag, r)
        measured.append(a)
        versus.append(b)
    single, auto_a, auto_b = results["A-single"], results["A-auto"], results["B-auto"]
    n = size.jobs
    parts = [
        f"Scenario {queued.label}. Scenario {at_once.label}. Simulator limit {RATE:g} req/s per"
        f" API; `watcher run --rate {RATE:g} --cadence {CADENCE:g} --poll MODE`; last job ends"
        f" {single.last_end_s:.0f} s (A) and {auto_b.last_end_s:.0f} s (B) after the watcher"
        " starts.\n",
        table(
            f"Benchmark 1 - rate limit, {n:,} jobs: measured",
            [
                "run",
                "jobs final",
                "lost",
                "dup",
                "wrong status",
                "makespan s",
                "requests GET + list",
                "req/job",
                "429s",
                "mean delay s",
                "p99 delay s",
            ],
            measured,
        ),
        table(
            "Benchmark 1 - against the bounds (see the docstring of bench/bench_rate.py)",
            [
                "run",
                "makespan LB s",
                "makespan / LB",
                "req/job LB",
                "ideal makespan s",
                "ideal req/job",
                "ideal mean delay s",
                "ideal p99 delay s",
                "mean / ideal",
                "p99 / ideal",
            ],
            versus,
        ),
        what_if(results["A-list"]),
    ]
    notes = []
    if single.capped:
        assert single.model is not None
        achieved = single.single_requests / single.wall_s
        projected = single.model.makespan * RATE / max(achieved, 1e-9)
        notes.append(
            f"A-single was CAPPED at {single.wall_s:.0f} s (SIGINT): {single.unique:,} of {n:,}"
            f" jobs final after {single.requests:,} requests ({achieved:.2f} req/s achieved of"
            f" {RATE:g}); projected makespan ~{projected:.0f} s (the ideal single poller's"
            f" {single.model.makespan:.0f} s scaled by {RATE:g} / {achieved:.2f} req/s);"
            f" lower bound {single.makespan_bound:.0f} s. Its delays cover only the jobs it saw"
            " before the cap (so they are not compared with the ideal)."
        )
    single_need = max(single.requests, n)
    if single.capped:
        assert single.model is not None
        single_need = max(single.model.requests, single.requests)
    ratio_a = single_need / max(auto_a.requests, 1)
    ratio_b = n / max(auto_b.requests, 1)
    span_a = auto_a.wall_s / auto_a.makespan_bound
    span_b = auto_b.wall_s / auto_b.makespan_bound
    basis = "the ideal single poller's count, the run was capped" if single.capped else "measured"
    notes += [
        f"target (>= 20x fewer API requests than single), scenario A: single {single_need:,}"
        f" ({basis}) / auto {auto_a.requests:,} = {ratio_a:.1f}x -> "
        + ("MET" if ratio_a >= 20 else "MISSED"),
        f"target (>= 20x fewer API requests than single), scenario B: single >= {n:,} (one GET"
        f" per job, a strict bound) / auto {auto_b.requests:,} = {ratio_b:.1f}x -> "
        + ("MET" if ratio_b >= 20 else "MISSED"),
        f"target (auto makespan <= 1.2x lower bound), A: {auto_a.wall_s:.1f} /"
        f" {auto_a.makespan_bound:.1f} s = {span_a:.2f}x -> "
        + ("MET" if span_a <= 1.2 and not auto_a.capped else "MISSED"),
        f"target (auto makespan <= 1.2x lower bound), B: {auto_b.wall_s:.1f} /"
        f" {auto_b.makespan_bound:.1f} s = {span_b:.2f}x -> "
        + ("MET" if span_b <= 1.2 and not auto_b.capped else "MISSED"),
    ]
    for tag, r in results.items():
        if r.summary_line:
            notes.append(f"{tag}: the watcher's own summary says `{r.summary_line}`")
        bad = r.duplicates or r.mismatched or r.exit_code not in (0, 1, 130)
        if bad or (not r.capped and r.lost):
            notes.append(
                f"PROBLEM in {tag}: {r.lost} lost, {r.duplicates} duplicated,"
                f" {r.mismatched} with the wrong status, exit {r.exit_code}"
            )
        if r.delays and min(r.delays) < -0.01:
            notes.append(f"PROBLEM in {tag}: a job was seen final {-min(r.delays):.3f} s early")
    return "\n".join(parts) + "\n" + "\n".join(f"- {line}" for line in notes) + "\n"


def what_if(list_run: ModeResult) -> str:
    """Model only: the ideal list poller of scenario A sweeping less often, against single."""
    rows = []
    single = model_single(list_run.ends)
    rows.append(
        [
            "single GETs, cadence 3 s",
            fmt(single.requests / list_run.jobs, 3),
            "1.0x",
            fmt(single.makespan, 1),
            fmt(mean(single.delays)),
            fmt(percentile(single.delays, 99)),
        ]
    )
    pages = math.ceil(list_run.jobs / PAGE)
    for every in (CADENCE, 10.0, 20.0, 30.0):
        m = model_list(list_run.ends, list_run.creates, every)
        rows.append(
            [
                f"list sweeps every max({every:g} s, {pages} pages / {RATE:g} req/s)",
                fmt(m.requests / list_run.jobs, 3),
                f"{single.requests / m.requests:.1f}x",
                fmt(m.makespan, 1),
                fmt(mean(m.delays)),
                fmt(percentile(m.delays, 99)),
            ]
        )
    return table(
        "Benchmark 1 - model only (no measurement): scenario A's end times, ideal pollers,"
        " fewer sweeps trade delay for requests",
        ["poller", "req/job", "fewer requests than single", "makespan s", "mean delay s", "p99 s"],
        rows,
    )


def main() -> int:
    """`python bench/bench_rate.py [--quick] [--single-cap S]`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="300 jobs over ~20 s")
    parser.add_argument(
        "--single-cap", type=float, help="stop the single run after S s (0: never; default 600)"
    )
    parser.add_argument(
        "--watcher-rate", type=float, default=RATE, help=f"the watcher's --rate ({RATE:g})"
    )
    args = parser.parse_args()
    print(run(args.quick, args.single_cap, args.watcher_rate), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
