"""Soak test (issue 3): thousands of jobs, every fault, two SIGKILLs, and nothing lost.

What it proves: `watcher run` brings a batch of 2,400 jobs to a correct manifest while the
simulator injects every fault kind at rates around 5-10% (auth-401 ~1.5%, unknown-state 3%),
a real per-API rate limit (12/s) sits under the watcher's `--rate` (16/s), `slow` answers outlast
`--request-timeout`, and the watcher is killed with SIGKILL twice at random moments (after a
random number of manifest lines, plus a random delay) and restarted with the same command. It
keeps restarting after a SIGKILL or an authentication stop (exit 2: three 401s in a row) until the
watcher exits 0 or 1, at most `--max-runs` times. Then it checks, and prints:

- every input job has one final manifest line (none missing, none duplicated: only an ERROR or
  TIMEOUT line, which a rerun watches again, may be followed by another), with its meta;
- each status matches how the simulator says the job ends (`GET /_sim/files/{id}`): SUCCEED ->
  SUCCEED, FAILED -> FAILED, CANCELED -> ERROR with code UNKNOWN_STATE; any other ERROR line is
  listed with its code and judged from the JSON logs: it is accepted only when the run that wrote
  it logged a full retry budget (`--max-retries`) of failures for it;
- every saved file's sha256 and size equal what the simulator served, in the manifest and on disk;
- no `*.part` file remains;

and it prints the kills, restarts, exit codes, faults injected (`GET /_sim/stats`) and elapsed
time. Exit status 0 when every invariant holds, 1 otherwise.

Run it with `make soak` (or `.venv/bin/python bench/soak.py --help` for the knobs). It takes a
few minutes and needs about 600 MB of disk under `bench/out/soak` (gitignored), which is deleted
after a passing run unless `--keep`; a failing run leaves it there, with each run's log.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = ROOT / "bench" / "out" / "soak"
MARKER = ".soak-workdir"  # only a folder holding this is emptied at the start

# Test credentials shared by the simulator and the watcher (never the demo ones).
SOAK_ENV = {
    "HUAWEICLOUD_SDK_AK": "SOAKTESTAK0000000000",
    "HUAWEICLOUD_SDK_SK": "soak-test-secret-key-not-a-real-one-0000",
    "HUAWEICLOUD_SDK_PROJECT_ID": "soakproject0000000000000000000000",
}
# Other credential sources the watcher would prefer or mix in: removed from the children's env.
FOREIGN_ENV = (
    "METASTUDIO_AUTH_TOKEN",
    "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    "CLOUD_SDK_AK",
    "CLOUD_SDK_SK",
)

# Every fault the simulator knows. auth-401 is kept low: three in a row stop the watcher (exit 2),
# which the soak survives by restarting, but each one also pauses the whole run for a second.
FAULTS = {
    "api-500": 0.06,
    "api-reset": 0.05,
    "throttle": 0.05,
    "slow": 0.05,
    "error-200": 0.06,
    "auth-401": 0.015,
    "unknown-state": 0.03,
    "short-download": 0.07,
    "expired-link": 0.06,
}
SPEAKERS = ("anna", "bo", "chen", "dara", "eli")

POLL_RETRY_EVENT = "poll failed, will retry"
DOWNLOAD_RETRY_EVENT = "download failed, will retry"
WRITER_EVENTS = frozenset({"job final", "job succeeded"})
FRESH_LINKS = "fresh links"  # how download errors of the link-refreshing call begin
POLL_ERROR_CODES = frozenset({"TRANSPORT", "MSS.000000001", "MSS.000000002"})
KILLED = -signal.SIGKILL
WRONG_SHOWN = 10


@dataclass(frozen=True, slots=True)
class Settings:
    """The soak's knobs (see `parse_args`)."""

    jobs: int
    seed: int
    workdir: Path
    keep: bool
    rate: float
    rate_limit: float
    request_timeout: float
    slow_seconds: float
    cadence: float
    time_scale: float
    slots: int
    fail_percent: int
    max_retries: int
    kills: int
    max_runs: int
    budget_s: float
    watcher_args: tuple[str, ...]
    faults: Mapping[str, float]


@dataclass(slots=True)
class Run:
    """One `watcher run`: how it ended and what it left behind."""

    number: int
    lines_before: int
    seconds: float = 0.0
    exit_code: int | None = None
    killed: bool = False
    timed_out: bool = False
    lines_after: int = 0
    parts_after: int = 0
    torn_after: bool = False
    log: Path = Path()

    def describe(self) -> str:
        """One line for the report."""
        how = (
            "timed out, SIGKILLed"
            if self.timed_out
            else "SIGKILL (soak)"
            if self.killed
            else f"exit {self.exit_code}"
        )
        text = (
            f"run {self.number}: {how} after {self.seconds:.1f} s; manifest lines "
            f"{self.lines_before} -> {self.lines_after}"
        )
        if self.killed or self.timed_out:
            torn = "a torn last line" if self.torn_after else "no torn line"
            text += f"; left {self.parts_after} .part files and {torn}"
        return text


@dataclass(slots=True)
class Check:
    """One line of the report; `ok` None is information, not an invariant."""

    label: str
    value: object
    ok: bool | None = None


@dataclass(slots=True)
class Report:
    """What the soak prints, in order."""

    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, label: str, value: object, ok: bool | None = None) -> None:
        """Add one row."""
        self.checks.append(Check(label, value, ok))

    @property
    def passed(self) -> bool:
        """Whether no invariant failed."""
        return all(check.ok is not False for check in self.checks)

    def render(self) -> str:
        """The aligned table, then the notes."""
        width = max(len(check.label) for check in self.checks)
        vwidth = max(len(str(check.value)) for check in self.checks)
        lines = []
        for check in self.checks:
            mark = "" if check.ok is None else ("  ok" if check.ok else "  FAIL")
            lines.append(f"  {check.label:<{width}}  {check.value!s:>{vwidth}}{mark}".rstrip())
        return "\n".join(lines + [f"  {note}" for note in self.notes])


def parse_args(argv: Sequence[str] | None) -> Settings:
    """The settings from the command line."""
    parser = argparse.ArgumentParser(
        prog="bench/soak.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    add = parser.add_argument
    add("--jobs", type=int, default=2400, help="job ids to watch (default 2400)")
    add("--seed", type=int, default=3, help="seed of the ids, kill moments and faults (3)")
    add(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help="work folder; one an earlier soak made is emptied first "
        f"(default {DEFAULT_WORKDIR.relative_to(ROOT)})",
    )
    add("--keep", action="store_true", help="keep the work folder after a passing run")
    add("--rate", type=float, default=16.0, help="the watcher's --rate (16)")
    add("--rate-limit", type=float, default=12.0, help="the simulator's --rate-limit (12)")
    add("--request-timeout", type=float, default=1.0, help="the watcher's (1)")
    add("--slow-seconds", type=float, default=2.0, help="a slow answer's delay (2)")
    add("--cadence", type=float, default=0.2, help="the watcher's --cadence (0.2)")
    add("--time-scale", type=float, default=0.05, help="the simulator's (0.05)")
    add("--slots", type=int, default=32, help="the simulator's synthesis slots (32)")
    add("--fail-percent", type=int, default=5, help="the simulator's (5)")
    add("--max-retries", type=int, default=5, help="the watcher's --max-retries (5)")
    add("--kills", type=int, default=2, help="SIGKILLs at random moments (2)")
    add("--max-runs", type=int, default=10, help="watcher runs at most (10)")
    add("--budget", type=float, default=540.0, help="seconds all runs may take (540)")
    add(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=RATE",
        help="change one fault's rate (repeatable), e.g. --fault auth-401=0.05",
    )
    add(
        "--watcher-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more argument for `watcher run` (repeatable), e.g. --watcher-arg=--poll=single",
    )
    args = parser.parse_args(argv)
    faults = dict(FAULTS)
    for spec in args.fault:
        name, _, rate = spec.partition("=")
        try:
            faults[name] = float(rate)
        except ValueError:
            parser.error(f"--fault {spec!r}: give NAME=RATE")
        if name not in FAULTS or not 0 <= faults[name] <= 1:
            parser.error(f"--fault {spec!r}: NAME is one of {', '.join(FAULTS)}, RATE 0-1")
    if args.jobs < 1 or args.kills < 0 or args.max_runs <= args.kills:
        parser.error("need --jobs >= 1 and --max-runs > --kills >= 0")
    return Settings(
        jobs=args.jobs,
        seed=args.seed,
        workdir=args.workdir.resolve(),
        keep=args.keep,
        rate=args.rate,
        rate_limit=args.rate_limit,
        request_timeout=args.request_timeout,
        slow_seconds=args.slow_seconds,
        cadence=args.cadence,
        time_scale=args.time_scale,
        slots=args.slots,
        fail_percent=args.fail_percent,
        max_retries=args.max_retries,
        kills=args.kills,
        max_runs=args.max_runs,
        budget_s=args.budget,
        watcher_args=tuple(args.watcher_arg),
        faults=faults,
    )


def write_inputs(path: Path, count: int, rng: random.Random) -> dict[str, dict[str, Any]]:
    """Write `count` job ids to `path`, four in five as JSON lines with meta (a short
    `text_length`, so files stay small), the rest bare; return each id's expected meta."""
    jobs: dict[str, dict[str, Any]] = {}
    lines = ["# watcher soak: job ids, JSON lines with meta and bare ids"]
    for n in range(count):
        job_id = f"soak{n:05d}-{rng.getrandbits(48):012x}"
        if rng.random() < 0.8:
            meta: dict[str, Any] = {
                "n": n,
                "speaker": rng.choice(SPEAKERS),
                "text_length": rng.randint(8, 120),
            }
            lines.append(json.dumps({"job_id": job_id, **meta}))
        else:
            meta = {}
            lines.append(job_id)
        jobs[job_id] = meta
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return jobs


def child_env() -> dict[str, str]:
    """The environment of both children: ours, with only the soak's credentials."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env.update(SOAK_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def read_first_line(stream: IO[bytes], timeout: float) -> str:
    """The first line of a child's stdout, waiting at most `timeout` seconds; '' if none."""
    deadline = time.monotonic() + timeout
    data = b""
    fd = stream.fileno()
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            return ""
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return ""
        chunk = os.read(fd, 4096)
        if not chunk:
            return ""
        data += chunk
    return data.split(b"\n", 1)[0].decode().strip()


@contextmanager
def simulator(settings: Settings, preload: Path, log: IO[bytes]) -> Iterator[str]:
    """Run `watcher sim` with every fault; yield its base URL; stop it with SIGINT."""
    command = [
        sys.executable,
        "-m",
        "watcher",
        "sim",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--seed",
        str(settings.seed),
        "--time-scale",
        str(settings.time_scale),
        "--slots",
        str(settings.slots),
        "--fail-percent",
        str(settings.fail_percent),
        "--rate-limit",
        str(settings.rate_limit),
        "--slow-seconds",
        str(settings.slow_seconds),
        "--url-ttl",
        "3600",
        "--preload",
        str(preload),
    ]
    for name, rate in settings.faults.items():
        command += ["--fault", f"{name}={rate:g}"]
    proc = subprocess.Popen(  # our own interpreter, our own module (S603 is off in bench/)
        command, stdout=subprocess.PIPE, stderr=log, env=child_env(), cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        url = read_first_line(proc.stdout, timeout=30.0)
        if not url.startswith("http://"):
            raise RuntimeError(f"the simulator did not print its URL (got {url!r}); see its log")
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        if proc.stdout is not None:
            proc.stdout.close()


def manifest_lines(path: Path) -> int:
    """Complete lines in the manifest now."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def torn_tail(path: Path) -> bool:
    """Whether the manifest ends in a partial line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    return bool(data) and not data.endswith(b"\n")


def part_files(out: Path) -> list[Path]:
    """`*.part` files anywhere under `out`."""
    return sorted(out.rglob("*.part"))


def any_part_file(out: Path) -> bool:
    """Whether a `.part` file is in `out` now (a download under way); cheap enough to spin on."""
    with os.scandir(out) as entries:
        return any(entry.name.endswith(".part") for entry in entries)


def stopped(pid: int, timeout: float = 0.5) -> bool:
    """Wait (briefly) until process `pid` is stopped (state T in /proc); False if not seen."""
    deadline = time.monotonic() + timeout
    stat = Path(f"/proc/{pid}/stat")
    while time.monotonic() < deadline:
        try:
            state = stat.read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            return False
        if state in ("T", "t"):
            return True
        time.sleep(0.0005)
    return False


def caught_downloading(proc: subprocess.Popen[bytes], out: Path) -> bool:
    """Freeze the watcher (SIGSTOP) and look for a `.part` file: True leaves it frozen with one
    on disk, ready for SIGKILL; False lets it go on (SIGCONT). Result files here are small and
    live as `.part` for a millisecond, so a kill sent on merely seeing one usually comes late."""
    proc.send_signal(signal.SIGSTOP)
    if stopped(proc.pid) and any_part_file(out):
        return True
    proc.send_signal(signal.SIGCONT)
    return False


@dataclass(frozen=True, slots=True)
class Kill:
    """When to SIGKILL a run: `delay` seconds after the manifest reaches `lines` lines, then, if
    `mid_download`, at the first moment a `.part` file exists (`caught_downloading`; waiting at
    most MID_DOWNLOAD_WAIT seconds for one)."""

    lines: int
    delay: float
    mid_download: bool

    def describe(self) -> str:
        """For the log."""
        where = ", then while a download is under way" if self.mid_download else ""
        return f"SIGKILL {self.delay:.2f} s after manifest line {self.lines}{where}"


MID_DOWNLOAD_WAIT = 3.0


def plan_kills(settings: Settings, rng: random.Random) -> list[Kill]:
    """Kill k at a random line count in the k-th of `kills` bands over 10%-80% of the jobs, plus a
    random 0-0.5 s; the last kill also waits for a download under way, so that `.part` cleanup
    is exercised whatever the luck of the draw."""
    band = 0.7 / max(1, settings.kills)
    return [
        Kill(
            lines=int(settings.jobs * (0.1 + band * (k + rng.uniform(0.1, 0.9)))),
            delay=rng.uniform(0.0, 0.5),
            mid_download=k == settings.kills - 1,
        )
        for k in range(settings.kills)
    ]


def watch_once(
    number: int, command: list[str], out: Path, log_path: Path, kill: Kill | None, deadline: float
) -> Run:
    """Run the watcher once; SIGKILL it as `kill` says (when given), or when `deadline`
    (monotonic) passes."""
    manifest = out / "manifest.jsonl"
    run = Run(number, lines_before=manifest_lines(manifest), log=log_path)
    kill_at = None if kill is None else max(kill.lines, run.lines_before + 1)
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # our own interpreter, our own module (S603 is off in bench/)
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=child_env(), cwd=ROOT
        )
        try:
            kill_due: float | None = None
            while proc.poll() is None:
                now = time.monotonic()
                if now >= deadline:
                    run.timed_out = True
                    proc.kill()
                    break
                if kill_at is not None and kill_due is None and manifest_lines(manifest) >= kill_at:
                    kill_due = now + (0.0 if kill is None else kill.delay)
                if kill is not None and kill_due is not None and now >= kill_due:
                    waiting = kill.mid_download and now < kill_due + MID_DOWNLOAD_WAIT
                    if waiting and not caught_downloading(proc, out):
                        time.sleep(0.002)
                        continue
                    proc.kill()
                    run.killed = True
                    break
                time.sleep(0.02 if kill_due is not None else 0.05)
            run.exit_code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    if run.exit_code != KILLED:
        run.killed = False  # it ended on its own in the same instant
    run.seconds = time.monotonic() - started
    run.lines_after = manifest_lines(manifest)
    run.parts_after = len(part_files(out))
    run.torn_after = torn_tail(manifest)
    return run


def watch_until_done(
    settings: Settings, command: list[str], out: Path, rng: random.Random
) -> list[Run]:
    """Run, kill at random moments and restart the watcher until it exits 0 or 1 (or the runs
    or the time budget run out)."""
    kills = plan_kills(settings, rng)
    for k, planned in enumerate(kills, 1):
        print(f"soak: kill {k} planned: {planned.describe()}", flush=True)
    deadline = time.monotonic() + settings.budget_s
    runs: list[Run] = []
    done = 0
    while len(runs) < settings.max_runs:
        number = len(runs) + 1
        kill = kills[done] if done < len(kills) else None
        run = watch_once(number, command, out, out.parent / f"run-{number}.log", kill, deadline)
        runs.append(run)
        print(f"soak: {run.describe()}", flush=True)
        if run.timed_out:
            break
        if run.killed:
            done += 1
            continue
        if run.exit_code == 2:  # stopped by the auth-failure threshold: restart
            continue
        break
    return runs


def get_json(url: str, timeout: float = 30.0) -> Any:
    """GET `url` (the simulator's own, unauthenticated routes) as JSON."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"not the local simulator: {url}")
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - checked above
        return json.load(resp)


def sha256_file(path: Path) -> tuple[int, str] | None:
    """Size and sha256 of a file, or None when it cannot be read."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError:
        return None
    return size, digest.hexdigest()


def read_manifest(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The manifest's lines, parsed, and how many could not be parsed."""
    records: list[dict[str, Any]] = []
    bad = 0
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return records, bad


@dataclass(slots=True)
class JobLog:
    """What one run's log says about one job."""

    writer_events: int = 0
    poll_retries: int = 0
    download_retries: Counter[str] = field(default_factory=Counter)
    last_file: str | None = None


def read_logs(paths: Sequence[Path]) -> list[dict[str, JobLog]]:
    """Per run, per job: the events that tell who wrote a line and how many retries it took
    (per file; a failed fresh-links call counts for the file whose retry preceded it)."""
    runs: list[dict[str, JobLog]] = []
    for path in paths:
        jobs: dict[str, JobLog] = {}
        for raw in path.read_bytes().splitlines():
            try:
                event = json.loads(raw)
            except ValueError:
                continue  # the summary line, or a line torn by SIGKILL
            if not isinstance(event, dict) or not isinstance(job_id := event.get("job_id"), str):
                continue
            name = event.get("event")
            if name in WRITER_EVENTS:
                jobs.setdefault(job_id, JobLog()).writer_events += 1
            elif name == POLL_RETRY_EVENT:
                jobs.setdefault(job_id, JobLog()).poll_retries += 1
            elif name == DOWNLOAD_RETRY_EVENT:
                seen = jobs.setdefault(job_id, JobLog())
                reason = event.get("reason", event.get("error", ""))  # `error` before 0.2
                file = str(reason).split(":", 1)[0]
                if file == FRESH_LINKS:  # a failed refresh is a try of the file being fetched
                    file = seen.last_file or file
                seen.last_file = file
                seen.download_retries[file] += 1
        runs.append(jobs)
    return runs


def partials_removed(paths: Sequence[Path]) -> int:
    """`.part` files the watcher says it removed on starting, summed over its logs."""
    removed = 0
    for path in paths:
        for raw in path.read_bytes().splitlines():
            if b"removed partial files" not in raw:
                continue
            with suppress(ValueError, TypeError):
                removed += int(json.loads(raw).get("count", 0))
    return removed


def judge_error(
    record: Mapping[str, Any], logs: Sequence[Mapping[str, JobLog]], max_retries: int
) -> tuple[bool, str]:
    """Whether an ERROR line (for a job the simulator finishes as SUCCEED or FAILED) is a retry
    budget honestly spent, judged from the log of the run that wrote it; and why."""
    job_id = record["job_id"]
    error = record.get("error") or {}
    code, message = str(error.get("code")), str(error.get("message"))
    writer = next((i for i in range(len(logs) - 1, -1, -1) if job_id in logs[i]), None)
    if writer is None:
        return False, "no run logged this job"
    seen = logs[writer][job_id]
    where = f"run {writer + 1}"
    if code in POLL_ERROR_CODES:
        spent = seen.poll_retries >= max_retries
        return spent, f"{where} logged {seen.poll_retries} poll retries"
    if code == "DOWNLOAD_FAILED":
        file = message.split(":", 1)[0]
        if file == FRESH_LINKS:
            file = seen.last_file or file
        tries = seen.download_retries.get(file, 0)
        spent = tries >= max_retries
        retried = dict(seen.download_retries) or "none"
        return spent, f"{where} logged download retries {retried}; the error names {file!r}"
    return False, f"code {code} is not a retry budget running out"


def verify(
    settings: Settings,
    url: str,
    expected_meta: Mapping[str, Mapping[str, Any]],
    out: Path,
    runs: Sequence[Run],
    report: Report,
) -> None:
    """Check the final manifest and files against the simulator; add the rows to `report`."""
    manifest = out / "manifest.jsonl"
    records, unreadable = read_manifest(manifest)
    per_job: dict[str, list[dict[str, Any]]] = {}
    strays = 0
    for record in records:
        job_id = record.get("job_id")
        if isinstance(job_id, str) and job_id in expected_meta:
            per_job.setdefault(job_id, []).append(record)
        else:
            strays += 1
    missing = [job_id for job_id in expected_meta if job_id not in per_job]
    # A rerun watches ERROR / TIMEOUT jobs again (issue 8), so their lines may be followed by a
    # newer one; any other line followed by another is a job written twice.
    duplicated = [
        job_id
        for job_id, lines in per_job.items()
        if any(r.get("status") not in ("ERROR", "TIMEOUT") for r in lines[:-1])
    ]
    once = len(per_job) - len(duplicated)  # per_job holds input jobs only
    retried = sum(len(lines) - 1 for j, lines in per_job.items() if j not in duplicated)
    report.add("jobs in input", len(expected_meta))
    report.add("lines in final manifest", len(records) + unreadable)
    report.add("jobs with one final line", once, once == len(expected_meta))
    report.add("ERROR/TIMEOUT lines watched again by a rerun", retried)
    report.add("jobs missing", len(missing), not missing)
    report.add("jobs duplicated", len(duplicated), not duplicated)
    report.add("lines unreadable or of no input job", unreadable + strays, not unreadable + strays)
    for job_id in missing[:10]:
        report.notes.append(f"missing: {job_id}")
    for job_id in duplicated[:10]:
        statuses = [r.get("status") for r in per_job[job_id]]
        report.notes.append(f"duplicated: {job_id} {statuses}")
    wrong_meta = [j for j, lines in per_job.items() if lines[-1].get("meta") != expected_meta[j]]
    report.add("lines whose meta differs from the input", len(wrong_meta), not wrong_meta)

    with ThreadPoolExecutor(max_workers=8) as pool:
        sim_files = dict(
            zip(
                expected_meta,
                pool.map(lambda j: get_json(f"{url}/_sim/files/{j}"), expected_meta),
                strict=True,
            )
        )
    logs = read_logs([run.log for run in runs])

    # Status against how the simulator says each job ends.
    expected_count: Counter[str] = Counter()
    outcome: Counter[str] = Counter()
    spent: list[str] = []
    wrong: list[str] = []
    wrong_kinds: Counter[str] = Counter()
    for job_id, lines in per_job.items():
        record = lines[-1]
        expected = sim_files[job_id]["expected_state"]
        expected_count[expected] += 1
        status = record.get("status")
        code = (record.get("error") or {}).get("code")
        right = (
            (expected == "SUCCEED" and status == "SUCCEED")
            or (expected == "FAILED" and status == "FAILED")
            or (expected == "CANCELED" and status == "ERROR" and code == "UNKNOWN_STATE")
        )
        if right:
            outcome[f"{expected} as expected"] += 1
            continue
        message = str((record.get("error") or {}).get("message"))[:120]
        if status == "ERROR" and expected in ("SUCCEED", "FAILED"):
            ok, why = judge_error(record, logs, settings.max_retries)
            line = f"{job_id} (expected {expected}): ERROR {code} {message!r}; {why}"
            if ok:
                outcome["ERROR after the retry budget"] += 1
                spent.append(line)
                continue
        else:
            line = f"{job_id} (expected {expected}): {status} {code} {message!r}"
        outcome["wrong status"] += 1
        wrong.append(line)
        reason = message.split(":", 1)[0] if code == "DOWNLOAD_FAILED" else ""
        wrong_kinds[f"expected {expected}, got {status} {code} {reason}".rstrip()] += 1
    for state in ("SUCCEED", "FAILED", "CANCELED"):
        got = outcome[f"{state} as expected"]
        label = {"SUCCEED": "SUCCEED", "FAILED": "FAILED", "CANCELED": "ERROR/UNKNOWN_STATE"}
        report.add(f"expected {state}: {label[state]} / all", f"{got} / {expected_count[state]}")
    report.add("ERROR lines after a spent retry budget", len(spent))
    report.add("lines with a wrong status", len(wrong), not wrong)
    error_codes = Counter(
        str((lines[-1].get("error") or {}).get("code"))
        for lines in per_job.values()
        if lines[-1].get("status") == "ERROR"
    )
    report.notes.extend(f"budget spent: {line}" for line in spent)
    for kind, n in wrong_kinds.most_common():
        report.notes.append(f"wrong status x{n}: {kind}")
    report.notes.extend(f"WRONG STATUS: {line}" for line in wrong[:WRONG_SHOWN])
    if len(wrong) > WRONG_SHOWN:
        report.notes.append(f"... and {len(wrong) - WRONG_SHOWN} more wrong statuses")

    # Files: manifest vs simulator vs disk.
    checked = 0
    bad_files: list[str] = []
    jobs_to_hash: list[tuple[str, str, Path, int, str]] = []
    for job_id, lines in per_job.items():
        record = lines[-1]
        if record.get("status") != "SUCCEED":
            continue
        served: dict[str, Any] = sim_files[job_id]["files"]
        saved: dict[str, Any] = record.get("files") or {}
        if set(saved) != set(served):
            bad_files.append(f"{job_id}: kinds saved {sorted(saved)} != served {sorted(served)}")
        for kind, entry in saved.items():
            want = served.get(kind)
            if want is None:
                continue
            checked += 1
            if (entry.get("sha256"), entry.get("bytes")) != (want["sha256"], want["bytes"]):
                bad_files.append(f"{job_id} {kind}: manifest sha256/bytes differ from served")
            path = Path(str(entry.get("path")))
            if not path.is_absolute():
                path = out / path  # manifest v2: relative to the manifest's folder
            jobs_to_hash.append((job_id, kind, path, want["bytes"], want["sha256"]))
    with ThreadPoolExecutor(max_workers=4) as pool:
        digests = list(pool.map(lambda item: sha256_file(item[2]), jobs_to_hash))
    for (job_id, kind, path, size, sha), on_disk in zip(jobs_to_hash, digests, strict=True):
        if on_disk is None:
            bad_files.append(f"{job_id} {kind}: {path} cannot be read")
        elif on_disk != (size, sha):
            bad_files.append(f"{job_id} {kind}: {path} on disk differs from served")
    report.add("files checked (manifest, disk, simulator)", checked)
    report.add("files whose sha256/bytes/kind mismatch", len(bad_files), not bad_files)
    report.notes.extend(f"FILE: {line}" for line in bad_files[:30])
    listed = {str(path) for _, _, path, _, _ in jobs_to_hash}
    orphans = [
        p
        for p in out.iterdir()
        if p.name != "manifest.jsonl" and not p.name.endswith(".part") and str(p) not in listed
    ]
    report.add("files on disk no SUCCEED line lists", len(orphans))
    parts = part_files(out)
    report.add(".part files remaining", len(parts), not parts)
    report.notes.extend(f"PART: {p}" for p in parts[:10])
    if error_codes:
        codes = ", ".join(f"{code} {n}" for code, n in sorted(error_codes.items()))
        report.notes.insert(0, f"ERROR lines by code: {codes}")


def report_runs(settings: Settings, runs: Sequence[Run], report: Report) -> None:
    """Kills, restarts and exit codes."""
    kills = sum(run.killed for run in runs)
    last = runs[-1] if runs else None
    finished = last is not None and last.exit_code in (0, 1) and not last.timed_out
    report.add("SIGKILLs done", f"{kills} of {settings.kills}", kills == settings.kills)
    report.add("restarts", max(0, len(runs) - 1))
    codes = " ".join("KILL" if run.killed else str(run.exit_code) for run in runs)
    report.add("exit code per run", codes)
    report.add("last run ended with exit 0 or 1", "yes" if finished else "no", finished)
    report.add(".part files left by the kills", sum(run.parts_after for run in runs if run.killed))
    logs = [run.log for run in runs]
    report.add(".part files the watcher logged removing", partials_removed(logs))
    report.add("torn manifest lines left by the kills", sum(run.torn_after for run in runs))


def report_sim(url: str, rates: Mapping[str, float], report: Report) -> None:
    """Faults injected and requests answered, from the simulator's counters."""
    stats = get_json(f"{url}/_sim/stats")
    faults: dict[str, int] = stats["faults"]
    statuses: dict[str, int] = stats["statuses"]
    throttled = sum(n for key, n in statuses.items() if key.endswith(" 429"))
    for api, n in sorted(stats["requests"].items()):
        report.add(f"requests answered: {api}", n)
    for name, rate in rates.items():
        report.add(f"fault {name} (rate {rate:g})", faults.get(name, 0))
    report.add("429s from the real --rate-limit", throttled - faults.get("throttle", 0))


def provenance() -> str:
    """Which watcher is soaked: its version, the git commit, and whether `watcher/` differs from
    it (read-only git calls; 'unknown' outside a checkout)."""
    version = "unknown"
    with suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(  # our own interpreter, fixed code
            [sys.executable, "-c", "import watcher; print(watcher.__version__)"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
            check=True,
        )
        version = done.stdout.strip()
    commit = "unknown"
    with suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "watcher"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
            check=True,
        ).stdout.strip()
        commit = head + (" with uncommitted changes in watcher/" if changed else "")
    return f"watcher {version}, commit {commit}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak; 0 when every invariant held."""
    settings = parse_args(argv)
    started = time.monotonic()
    rng = random.Random(settings.seed)
    work = settings.workdir
    if work.exists() and any(work.iterdir()):
        if not (work / MARKER).exists():
            print(f"soak: {work} is not empty and not a soak's work folder; not touching it")
            return 2
        shutil.rmtree(work)
    out = work / "out"
    out.mkdir(parents=True)
    (work / MARKER).write_text("a bench/soak.py work folder: emptied by the next soak\n")
    inputs = work / "jobs.jsonl"
    expected_meta = write_inputs(inputs, settings.jobs, rng)
    faults = " ".join(f"{name}={rate:g}" for name, rate in settings.faults.items())
    print(
        f"soak: {settings.jobs} jobs in {inputs}; seed {settings.seed}; faults {faults}; "
        f"sim --rate-limit {settings.rate_limit:g} --slow-seconds {settings.slow_seconds:g} "
        f"--time-scale {settings.time_scale:g} --slots {settings.slots} "
        f"--fail-percent {settings.fail_percent}",
        flush=True,
    )
    print(f"soak: soaking {provenance()}", flush=True)
    report = Report()
    with (work / "sim.log").open("wb") as sim_log, simulator(settings, inputs, sim_log) as url:
        command = [
            sys.executable,
            "-m",
            "watcher",
            "run",
            str(inputs),
            "--endpoint",
            url,
            "--out",
            str(out),
            "--cadence",
            f"{settings.cadence:g}",
            "--rate",
            f"{settings.rate:g}",
            "--request-timeout",
            f"{settings.request_timeout:g}",
            "--max-retries",
            str(settings.max_retries),
            "--log-format",
            "json",
            *settings.watcher_args,
        ]
        print(f"soak: simulator at {url}; watcher command: {' '.join(command[1:])}", flush=True)
        runs = watch_until_done(settings, command, out, rng)
        watched = time.monotonic() - started
        verify(settings, url, expected_meta, out, runs, report)
        report_runs(settings, runs, report)
        report_sim(url, settings.faults, report)
    report.add("watcher time, all runs (s)", f"{sum(run.seconds for run in runs):.1f}")
    report.add("elapsed: until the last exit (s)", f"{watched:.1f}")
    report.add("elapsed: in all, verification included (s)", f"{time.monotonic() - started:.1f}")
    print("\nsoak results:")
    print(report.render())
    verdict = "PASS" if report.passed else "FAIL"
    print(f"\nsoak: {verdict} in {time.monotonic() - started:.1f} s", flush=True)
    if report.passed and not settings.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"soak: work folder kept: {work}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        raise SystemExit(main())
    raise SystemExit(130)
