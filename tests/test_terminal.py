"""`watcher run` on a real terminal: a pseudo-terminal read through a terminal emulator, and tmux.

The child is a real `watcher run` process whose stderr is the terminal, against a simulator on
127.0.0.1. What it leaves on the screen is read back as a person would see it.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pyte
import pytest
from helpers import TEST_AK, TEST_PROJECT_ID, TEST_SK, SimFactory

from watcher._inputs import Job

STATUS = re.compile(r"\d+ jobs: ")  # only the status line says "N jobs:"
LOG = re.compile(r"\[(debug|info|warning|error)")
COLUMNS, ROWS = 80, 24


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHER_", "HUAWEICLOUD_"))}
    env.update(
        HOME=str(tmp_path / "home"),
        HUAWEICLOUD_SDK_AK=TEST_AK,
        HUAWEICLOUD_SDK_SK=TEST_SK,
        HUAWEICLOUD_SDK_PROJECT_ID=TEST_PROJECT_ID,
        TERM="xterm-256color",
        COLUMNS=str(COLUMNS),  # what a resized terminal would say; the tty's own size wins
    )
    return env


def _argv(sim_url: str, tmp_path: Path, jobs: list[Job], *flags: str) -> list[str]:
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"job_id": j.job_id}) + b"\n" for j in jobs))
    out = str(tmp_path / "out")
    run = [sys.executable, "-m", "watcher", "run", str(path), "--endpoint", sim_url, "--out", out]
    return [*run, "--cadence", "0.05", "--progress-interval", "0.02", *flags]


class Terminal:
    """A child process whose stderr is an 80x24 pseudo-terminal, and what it shows there."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self._master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        # Tall enough that nothing scrolls away: the rows are what the child drew, in order.
        self.screen = pyte.Screen(COLUMNS, 2000)
        self._stream = pyte.ByteStream(self.screen)
        self.raw = b""
        self.child = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env
        )
        os.close(slave)

    def rows(self) -> list[str]:
        """The screen's non-blank rows, right-trimmed."""
        return [r.rstrip() for r in self.screen.display if r.strip()]

    def read(self, until: Callable[[], bool], timeout: float = 30.0) -> Iterator[None]:
        """Feed what the child writes to the screen, chunk by chunk (yielding after each),
        until `until()` or the child closes the terminal; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, f"the terminal showed: {self.rows()[-10:]}"
            ready, _, _ = select.select([self._master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not chunk:
                return
            self.raw += chunk
            self._stream.feed(chunk)
            yield

    def finish(self) -> int:
        """Read to the end; the child's exit code."""
        for _ in self.read(lambda: False):
            pass
        code = self.child.wait(timeout=30)
        os.close(self._master)
        return code


CONTROL = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def _segments(raw: bytes) -> list[str]:
    """What was written between carriage returns and newlines, control sequences left out."""
    return re.split(r"[\r\n]", CONTROL.sub(b"", raw).decode("utf-8", "replace"))


def _no_log_on_a_status_row(rows: list[str]) -> None:
    for row in rows:
        assert not (STATUS.search(row) and LOG.search(row)), f"a log line on the status: {row!r}"


def test_logs_scroll_above_the_status_which_fits_and_is_gone_at_the_end(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """A debug-level run at 80x24: no log line lands on the status, the status never passes
    79 columns, and when the run ends the status is gone and the summary table follows."""
    jobs = [Job(f"tty-{i:02d}") for i in range(24)]
    sim = sim_factory(jobs, time_scale=0.02, slots=4)
    argv = _argv(sim.url, tmp_path, jobs, "--log-level", "debug", "--log-format", "console")
    terminal = Terminal(argv, _env(tmp_path))
    for _ in terminal.read(lambda: False, timeout=60):
        rows = terminal.rows()
        _no_log_on_a_status_row(rows)
        for row in rows:
            if STATUS.search(row):
                assert len(row) < COLUMNS, row
    assert terminal.finish() == 0
    rows = terminal.rows()
    # Every status the child drew, from the bytes it wrote (a loaded machine may hand the reader
    # a status and its erasure in one chunk, so the screen alone could miss them all).
    drawn = [s for s in _segments(terminal.raw) if STATUS.search(s)]
    assert drawn and all(len(s) < COLUMNS for s in drawn), [s for s in drawn if len(s) >= COLUMNS]
    assert b"req/s" in terminal.raw and b"ETA" in terminal.raw
    assert len([r for r in rows if LOG.search(r)]) >= len(jobs)  # each job logged at debug
    assert not [r for r in rows if STATUS.search(r) or "req/s" in r], "status left behind"
    assert re.search(r"SUCCEED\s+24$", "\n".join(rows), re.MULTILINE)


def test_json_logs_on_a_terminal_stay_json_lines(sim_factory: SimFactory, tmp_path: Path) -> None:
    """--log-format json on a terminal (a pod with tty: true): no status line, no escape code,
    every line a JSON object, the last one the run summary."""
    jobs = [Job(f"json-{i:02d}") for i in range(6)]
    sim = sim_factory(jobs)
    terminal = Terminal(_argv(sim.url, tmp_path, jobs, "--log-format", "json"), _env(tmp_path))
    assert terminal.finish() == 0
    assert b"\x1b" not in terminal.raw
    events = [orjson.loads(line) for line in terminal.raw.splitlines()]  # the tty adds \r\n
    assert events[-1]["event"] == "run summary" and events[-1]["statuses"]["SUCCEED"] == 6
    assert any(e["event"] == "progress" for e in events)


def test_ctrl_c_leaves_a_clean_screen(sim_factory: SimFactory, tmp_path: Path) -> None:
    """SIGINT mid-run: the stop is logged above the status, then the status is erased and the
    last rows say the run was interrupted; exit 130."""
    jobs = [Job(f"int-{i:02d}") for i in range(8)]
    sim = sim_factory(jobs, time_scale=1.0)  # a job takes seconds: the run is under way
    terminal = Terminal(_argv(sim.url, tmp_path, jobs), _env(tmp_path))
    for _ in terminal.read(lambda: any(STATUS.search(r) for r in terminal.rows())):
        pass
    terminal.child.send_signal(signal.SIGINT)
    assert terminal.finish() == 130
    rows = terminal.rows()
    _no_log_on_a_status_row(rows)
    assert not [r for r in rows if STATUS.search(r) or "req/s" in r], rows
    assert "stopping: finishing downloads under way" in rows[0]
    assert rows[-2].startswith("watcher: interrupted")


class Tmux:
    """One tmux server of our own (its socket in a temp folder), with one 80x24 session."""

    def __init__(self, socket: Path, command: list[str], env: dict[str, str]) -> None:
        self._base = ["tmux", "-S", str(socket)]
        sets = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
        shell = " ".join(map(_quote, command)) + '; echo "exit=$?"; sleep 60'
        self.tmux("new-session", "-d", "-x", str(COLUMNS), "-y", str(ROWS), *sets, shell)

    def tmux(self, *args: str) -> str:
        """Run a tmux command against our server; its stdout."""
        done = subprocess.run(  # noqa: S603 (tmux, found on PATH by the skip guard)
            [*self._base, *args], capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout

    def pane(self) -> list[str]:
        """The visible pane, as text, blank rows dropped."""
        return [r.rstrip() for r in self.tmux("capture-pane", "-p").splitlines() if r.strip()]

    def wait_for(self, found: Callable[[list[str]], bool], timeout: float = 30.0) -> list[str]:
        """The pane once `found(pane)`; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not found(pane := self.pane()):
            assert time.monotonic() < deadline, f"the pane showed: {pane}"
            time.sleep(0.05)
        return pane

    def kill(self) -> None:
        """Stop the server and its session."""
        subprocess.run([*self._base, "kill-server"], capture_output=True, timeout=10)  # noqa: S603


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


@pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)"
)
def test_in_tmux_at_80x24_the_status_reads_whole_and_ctrl_c_leaves_it_clean(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """In a real tmux pane of 80x24: the status is two whole lines with the rate, throttling and
    ETA; Ctrl-C typed at the keyboard leaves the stop message and no status, no `^C`."""
    jobs = [Job(f"mux-{i:02d}") for i in range(8)]
    sim = sim_factory(jobs, time_scale=1.0)
    tmux = Tmux(tmp_path / "tmux.sock", _argv(sim.url, tmp_path, jobs), _env(tmp_path))
    try:
        pane = tmux.wait_for(lambda rows: any("ETA" in r for r in rows))
        status = [r for r in pane if STATUS.search(r) or "req/s" in r]
        assert len(status) == 2 and all(len(r) < COLUMNS for r in status), pane
        assert "req/s" in status[1] and "throttled" in status[1] and "ETA" in status[1]
        tmux.tmux("send-keys", "C-c")
        pane = tmux.wait_for(lambda rows: any(r.startswith("exit=") for r in rows))
        assert "exit=130" in pane
        assert not [r for r in pane if STATUS.search(r) or "req/s" in r], pane
        assert not [r for r in pane if "^C" in r], pane
        assert any("stopping: finishing downloads under way" in r for r in pane)
    finally:
        tmux.kill()
