"""Benchmark 7 (issue 12): big nightly batches, and what adaptive sweeps spend on them.

What it measures: scenario C, 20,000 jobs (2,000 with `--quick`) preloaded into a simulator
that synthesises them in creation order on as many slots as drain the batch in about 600 s
(60 s quick), limit 10 requests/s per API, watched by the default `watcher run JOBS` (auto,
`--rate 10`, cadence 3); scenario D, the same batch synthesised in a random order
(`watcher sim --random-order`), where what changes is spread over the whole window and adaptive
sweeps have nothing to exploit. Per run: requests (GET + list), the share of each API's rate
budget used (requests / (10/s x makespan)), the delay from a job's end in the simulator to the
watcher's `finished_at` (mean, p99, max; every simulated job is PROCESSING for 4-12 s before
it ends), makespan against its bound (the last job's end, or the pages one read of every job
needs at the rate), and the "ideal blind poller" of `bench_rate.model_list` on the same end
times: uniform sweeps of the whole window, once per cadence or as fast as the rate allows,
which is what the watcher did before adaptive sweeps.

`--baseline REF` also runs each scenario with the watcher of git REF (exported with `git
archive` into the work folder and put first on PYTHONPATH), side by side. `--ab` also runs
scenarios A and B of `bench_rate` (5,000 jobs, `--poll list` and `auto`; 300 with `--quick`)
one after the other beside them. All runs go in parallel, each pair (simulator, watcher) on
its own: they are mostly idle at 10 requests/s, but they share two cores, so delays carry some
scheduling noise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import bench_rate
from bench_rate import RATE, ModeResult, Scenario, Size, make_jobs, model_list, slots_for
from common import OUT, ROOT, child_env, fmt, fresh_dir, log, mean, percentile, table, write_lines

FULL = Size(20_000, 600.0)
QUICK = Size(2_000, 60.0)


def scenarios(size: Size, work: Path) -> tuple[Scenario, Scenario]:
    """C: queued in creation order; D: the same jobs synthesised in a random order."""
    jobs = make_jobs(size.jobs, seed=12)
    jobs_file = write_lines(
        work / "jobs.jsonl", (json.dumps({"job_id": j, "text_length": n}) for j, n in jobs)
    )
    slots = slots_for(jobs, size.span_s)
    where = f"{size.jobs:,} jobs queued on {slots} synthesis slots (4-12 s each)"
    queued = Scenario(
        "C", f"C: {where}, in creation order, over ~{size.span_s:.0f} s", jobs, slots, jobs_file
    )
    shuffled = Scenario(
        "D",
        f"D: {where}, in a random order, over ~{size.span_s:.0f} s",
        jobs,
        slots,
        jobs_file,
        random_order=True,
    )
    return queued, shuffled


def baseline_src(ref: str, work: Path) -> Path:
    """A folder in `work` holding the `watcher/` of git `ref`: run from there (`python -m`
    puts the current folder first on sys.path), with it on PYTHONPATH, the watcher is that
    version."""
    src = fresh_dir(work / f"baseline-{ref}")
    archive = src / "src.tar"
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), ref, "watcher"],
        check=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(src, filter="data")
    return src


def _row(tag: str, r: ModeResult) -> list[str]:
    assert r.model is not None
    m = r.model
    return [
        tag,
        f"{r.unique:,}/{r.jobs:,}",
        f"{r.lost}/{r.duplicates}/{r.mismatched}",
        f"{r.wall_s:.1f} / {r.makespan_bound:.1f} = {r.wall_s / r.makespan_bound:.3f}x",
        f"{r.single_requests:,} + {r.list_requests:,}",
        f"{r.single_requests / (RATE * r.wall_s):.0%} / {r.list_requests / (RATE * r.wall_s):.0%}",
        fmt(r.throttled),
        f"{fmt(mean(r.delays))} / {fmt(percentile(r.delays, 99))} / {fmt(max(r.delays))}",
        f"{m.requests:,} list",
        f"{fmt(mean(m.delays))} / {fmt(percentile(m.delays, 99))} / {fmt(max(m.delays))}",
    ]


def report(label: str, results: dict[str, ModeResult], size: Size) -> str:
    """The table, the targets and the watcher's own figures."""
    rows = [_row(tag, r) for tag, r in results.items()]
    text = table(
        f"Benchmark 7 - big batches, {size.jobs:,} jobs, limit {RATE:g} req/s per API: measured,"
        " and the ideal blind (uniform) poller on the same end times",
        [
            "run",
            "jobs final",
            "lost/dup/wrong",
            "makespan / bound s",
            "requests GET + list",
            "budget GET / list",
            "429s",
            "delay mean / p99 / max s",
            "ideal requests",
            "ideal delay mean / p99 / max s",
        ],
        rows,
    )
    notes = [label]
    c = results.get("C-auto")
    if c is not None and c.delays:
        share = c.list_requests / (RATE * c.wall_s)
        ok = (
            mean(c.delays) <= 3
            and percentile(c.delays, 99) <= 6
            and share <= 0.5
            and c.wall_s <= 1.05 * c.makespan_bound
        )
        notes.append(
            f"target C (mean <= 3 s, p99 <= 6 s, <= half the budget, makespan <= 1.05x):"
            f" {mean(c.delays):.2f} s, {percentile(c.delays, 99):.2f} s, list {share:.0%}"
            f" (GET {c.single_requests / (RATE * c.wall_s):.0%}),"
            f" {c.wall_s / c.makespan_bound:.3f}x -> " + ("MET" if ok else "MISSED")
        )
    for tag, r in results.items():
        if r.achieved_line:
            notes.append(f"{tag}: `{r.achieved_line}`")
        if r.lost or r.duplicates or r.mismatched or r.exit_code not in (0, 1):
            notes.append(
                f"PROBLEM in {tag}: {r.lost} lost, {r.duplicates} duplicated,"
                f" {r.mismatched} wrong, exit {r.exit_code}"
            )
    return text + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def run(
    quick: bool = False, baseline: str | None = None, ab: bool = False, only: str = "CD"
) -> str:
    """Run benchmark 6 and return its report (Markdown)."""
    size = QUICK if quick else FULL
    work = fresh_dir(OUT / "batches")
    queued, shuffled = scenarios(size, work)
    cap = 3 * size.span_s + 120
    # outside bench/, where mypy and ruff would take it for ours
    src = baseline_src(baseline, Path(tempfile.mkdtemp(prefix="bench-"))) if baseline else None
    results: dict[str, ModeResult] = {}
    errors: list[BaseException] = []
    jobs: list[tuple[str, Callable[[], ModeResult]]] = []
    for scenario in (s for s in (queued, shuffled) if s.name in only):
        jobs.append((f"{scenario.name}-auto", partial(_one, scenario, work, cap)))
        if src is not None:
            jobs.append(
                (f"{scenario.name}-auto@{baseline}", partial(_one, scenario, work, cap, src))
            )

    def worker(tag: str, call: Callable[[], ModeResult]) -> None:
        try:
            results[tag] = call()
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    def ab_runs() -> None:
        ab_size = bench_rate.QUICK if quick else bench_rate.FULL
        ab_work = fresh_dir(OUT / "batches-ab")
        a, b = bench_rate.scenarios(ab_size, ab_work)
        for scenario, mode in ((a, "list"), (a, "auto"), (b, "list"), (b, "auto")):
            worker(
                f"{scenario.name}-{mode}",
                partial(bench_rate.run_mode, scenario, mode, ab_work, 4 * ab_size.span_s + 120),
            )

    threads = [threading.Thread(target=worker, args=job, name=job[0]) for job in jobs]
    if ab:
        threads.append(threading.Thread(target=ab_runs, name="ab"))
    log(f"batches: {size.jobs} jobs; {len(threads)} runs in parallel")
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(cap + 600)
    if errors:
        raise errors[0]
    order: list[str] = [tag for tag in ("A-list", "A-auto", "B-list", "B-auto") if tag in results]
    order += sorted(tag for tag in results if tag[0] in "CD")
    label = f"Scenario {queued.label}. Scenario {shuffled.label}."
    return report(label, {tag: results[tag] for tag in order}, size)


def _one(scenario: Scenario, work: Path, cap: float, src: Path | None = None) -> ModeResult:
    """One `watcher run` (auto) of `scenario`: this checkout's, or the one in `src`."""
    if src is None:
        result = bench_rate.run_mode(scenario, "auto", work, cap)
    else:
        env = child_env(PYTHONPATH=str(src))
        result = bench_rate.run_mode(
            scenario, "auto", work, cap, variant="-baseline", env=env, cwd=src
        )
    result.model = model_list(*result.model_in)
    return result


def main() -> int:
    """`python bench/bench_batches.py [--quick] [--baseline REF] [--ab]`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="2,000 jobs over ~60 s")
    parser.add_argument("--baseline", metavar="REF", help="also run the watcher of git REF")
    parser.add_argument("--ab", action="store_true", help="also run bench_rate's A and B")
    parser.add_argument("--only", default="CD", help="the scenarios to run: C, D or CD")
    args = parser.parse_args()
    print(run(args.quick, args.baseline, args.ab, args.only), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
