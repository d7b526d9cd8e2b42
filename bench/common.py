"""Shared helpers for the polling benchmarks (issue 4): processes, the simulator, /proc, tables.

Every benchmark runs the simulator and the program under test as separate subprocesses, so that
each one's CPU time and peak RSS can be read on its own: CPU from `/proc/PID/stat` while it runs
and `os.wait4` when it ends, peak RSS from `/proc/PID/status` VmHWM only. (Not `ru_maxrss`: on
Linux a child's ru_maxrss starts from the RSS of the process that forked it, carried over the
exec, so a 75 MB benchmark process makes every child report >= 75 MB; `/bin/true` spawned from a
300 MB Python process reports 313 MB.) Every wait is bounded; every process started here is
stopped in a `finally` block, by its own pid, with SIGINT, then SIGKILL if it lingers.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "polling"  # gitignored (bench/out/)
PYTHON = sys.executable
WATCHER = (PYTHON, "-m", "watcher")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Credentials shared by the simulator and every client (fake ones, for the simulator only).
BENCH_ENV = {
    "HUAWEICLOUD_SDK_AK": "BENCHPOLLAK000000000",
    "HUAWEICLOUD_SDK_SK": "bench-polling-secret-not-a-real-one-0000",
    "HUAWEICLOUD_SDK_PROJECT_ID": "benchpollproject0000000000000000",
}
# Credential sources the watcher would prefer or mix in: removed from the children's env.
FOREIGN_ENV = (
    "METASTUDIO_AUTH_TOKEN",
    "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    "CLOUD_SDK_AK",
    "CLOUD_SDK_SK",
    "WATCHER_CONFIG",
)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child: ours, minus foreign credentials, plus the bench ones."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env.update(BENCH_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def fresh_dir(path: Path) -> Path:
    """`path` as a new, empty directory."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def spawn(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = subprocess.DEVNULL,
    stderr: int | IO[Any] | None = subprocess.DEVNULL,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `cmd` (never through a shell)."""
    return subprocess.Popen(
        list(cmd),
        env=dict(env) if env is not None else child_env(),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd or ROOT,
    )


@dataclass(frozen=True, slots=True)
class Ended:
    """How a child ended: exit code, its own CPU seconds (user + system), and whether it had to
    be killed. (No peak RSS: see the module docstring.)"""

    code: int
    cpu_s: float
    user_s: float
    sys_s: float
    killed: bool


def reap(proc: subprocess.Popen[bytes], timeout: float, sig: int | None = signal.SIGINT) -> Ended:
    """Send `sig` (unless None), wait at most `timeout` s, SIGKILL after that; return its
    exit code and, from `os.wait4`, its own CPU time."""
    if sig is not None and proc.returncode is None:
        # os.kill, not proc.send_signal: that polls first and so reaps a child that has exited,
        # and wait4 below would find no child. Unreaped, the pid cannot have been reused.
        with suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
    deadline = time.monotonic() + timeout
    killed = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if time.monotonic() > deadline and not killed:
            with suppress(ProcessLookupError):
                proc.kill()
            killed = True
            deadline = time.monotonic() + 10
        elif killed and time.monotonic() > deadline:
            raise RuntimeError(f"pid {proc.pid} survived SIGKILL for 10 s")
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Ended(
        code=proc.returncode,
        cpu_s=usage.ru_utime + usage.ru_stime,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        killed=killed,
    )


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait at most `timeout` s for `proc` to exit on its own, leaving it unreaped (for `reap`)."""
    deadline = time.monotonic() + timeout
    while True:
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    """Make sure `proc` is gone: SIGINT, then SIGKILL after `timeout` s. For finally blocks."""
    if proc is None or proc.returncode is not None:
        return
    with suppress(ChildProcessError):
        reap(proc, timeout)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds `pid` (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_mb(pid: int, key: str = "VmHWM") -> float:
    """A memory figure of /proc/PID/status (VmHWM: peak RSS; VmRSS: now) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def read_line(stream: IO[bytes], timeout: float) -> str:
    """The first line of `stream` within `timeout` s, else TimeoutError."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = stream.fileno()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no line within {timeout:g} s (got {buf[:200]!r})")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"stream closed before a line (got {buf[:200]!r})")
            buf += chunk
    return buf.split(b"\n", 1)[0].decode().strip()


@dataclass(frozen=True, slots=True)
class Sim:
    """A simulator subprocess answering at `url`."""

    url: str
    proc: subprocess.Popen[bytes]

    def stats(self) -> dict[str, Any]:
        """`GET /_sim/stats` (not counted by the simulator)."""
        return http_json(f"{self.url}/_sim/stats")

    def count(self, api: str) -> int:
        """Requests answered so far for `api` (any status)."""
        return int(self.stats()["requests"].get(api, 0))


def http_json(url: str, timeout: float = 30.0) -> dict[str, Any]:
    """GET a JSON object from the local simulator."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own URL
        doc = json.loads(response.read())
    assert isinstance(doc, dict)
    return doc


@contextmanager
def simulator(
    args: Sequence[str],
    log: Path,
    *,
    runner: Sequence[str] | None = None,
    start_timeout: float = 120.0,
) -> Iterator[Sim]:
    """Run `watcher sim --host 127.0.0.1 --port 0 ARGS` (or `runner ARGS`) until the block ends.

    The first stdout line is its URL; stderr goes to `log`.
    """
    cmd = [*(runner or (*WATCHER, "sim")), "--host", "127.0.0.1", "--port", "0", *args]
    proc = None
    with log.open("wb") as err:
        try:
            proc = spawn(cmd, stdout=subprocess.PIPE, stderr=err)
            assert proc.stdout is not None
            url = read_line(proc.stdout, start_timeout)
            if not url.startswith("http://127.0.0.1:"):
                raise RuntimeError(f"simulator printed {url!r}, see {log}")
            yield Sim(url, proc)
        finally:
            stop(proc)
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()


def watcher_cmd(endpoint: str, out: Path, *args: str) -> list[str]:
    """`watcher run` against `endpoint`, saving into `out`."""
    return [*WATCHER, "run", "--endpoint", endpoint, "--out", str(out), *args]


def write_lines(path: Path, lines: Iterable[str]) -> Path:
    """Write one line per item."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    return path


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Every manifest line (a torn last line is skipped)."""
    if not path.exists():
        return []
    lines = []
    for raw in path.read_bytes().splitlines():
        with suppress(json.JSONDecodeError):
            lines.append(json.loads(raw))
    return lines


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def mean(values: Sequence[float]) -> float:
    """The mean; NaN for no values."""
    return statistics.fmean(values) if values else float("nan")


def fmt(value: float | int | str | None, digits: int = 2) -> str:
    """A table cell."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    if value != value:  # NaN
        return "-"
    return f"{value:,.{digits}f}"


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (aligned, so it reads well on a terminal too) under a bold title."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [f"**{title}**", "", line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(r) for r in rows)
    return "\n".join(out) + "\n"


def machine_note() -> str:
    """One line about where the numbers came from."""
    load = os.getloadavg()
    return (
        f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        f" at start; Python {sys.version.split()[0]}"
    )


def log(message: str) -> None:
    """Progress on stderr (the tables go to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
