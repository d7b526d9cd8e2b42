"""One run per batch at a time: an advisory lock on `--out` and on the manifest.

A run holds `fcntl.flock` on `<out>/.watcher._lock` and on `.<name>.lock` beside the manifest
(`--manifest -` locks `--out` only): two lock files, so a run that shares either the folder or
the manifest with another one is refused, while batches that only share a manifest folder are
not. The kernel drops a lock when its process ends, however it ends, so `kill -9` never leaves
a stale one (only an idle file, which the next run locks and removes). A run removes its lock
files when it ends, while still holding them; a run that locked a file just removed checks that
the path still names the file it locked, and tries again if not, so two runs never hold two
different files. Each file holds its run's pid, host and start time, so a second run can say
who is running: it gets a LedgerError (exit 2).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from watcher._errors import LedgerError

LOCK_NAME = ".watcher._lock"
TRIES = 5


def lock_paths(out_dir: Path, manifest: Path | None) -> list[Path]:
    """The lock files of a run writing into `out_dir` and to `manifest` (None: stdout)."""
    paths = [out_dir / LOCK_NAME]
    if manifest is not None:
        paths.append(manifest.with_name(f".{manifest.name}.lock"))
    return paths


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").split()
    except OSError:
        text = []
    if len(text) >= 3:
        return f"pid {text[0]} on {text[1]}, running since {text[2]}"
    return "a run that has not said who it is yet"


def acquire(path: Path) -> int:
    """Lock `path` for this process (creating it) and write who holds it; the open descriptor.

    LedgerError naming the other run when it is held, or the OS's reason when it cannot be made.
    """
    for _ in range(TRIES):
        fd = _lock(path)
        try:
            if _same(fd, path):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the run before us removed it after we opened it: lock the new one
    else:
        raise LedgerError(f"cannot lock {path}: it keeps being replaced")
    since = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {since}\n".encode(), 0)
    except OSError:
        pass  # the lock holds without the note; a second run then cannot name us
    return fd


def _same(fd: int, path: Path) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _lock(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise LedgerError(f"cannot create the lock file {path}: {_reason(exc)}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise LedgerError(
            f"another run is using this batch ({path} is locked by {holder}); "
            "wait for it to end, or give this run another --out / --manifest"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise LedgerError(f"cannot lock {path}: {_reason(exc)}") from exc
    return fd


class BatchLock:
    """`with BatchLock(paths):` holds every lock in `paths` (taken in order) for the block."""

    __slots__ = ("_fds", "paths")

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(paths)
        self._fds: list[int] = []

    def __enter__(self) -> BatchLock:
        try:
            for path in self.paths:
                self._fds.append(acquire(path))
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        """Remove the lock files and let go of every lock held; never raises."""
        while self._fds:
            fd, path = self._fds.pop(), self.paths[len(self._fds)]
            with contextlib.suppress(OSError):  # gone already, or a read-only folder: harmless
                path.unlink()
            os.close(fd)

    def __repr__(self) -> str:
        return f"<BatchLock {', '.join(map(str, self.paths))} held={bool(self._fds)}>"
