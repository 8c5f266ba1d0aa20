"""One run at a time per job: an OS file lock that the kernel releases if the process dies."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mailbatch.errors import AlreadyRunningError, StateError

__all__ = ["JobLock", "job_lock"]

_TRIES = 10  # a lock file replaced this many times in a row while we lock it: give up


class JobLock:
    """The lock a run holds; ``check`` tells whether its file is still the one at the path."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    def check(self) -> None:
        """StateError if the lock file was deleted or replaced since it was locked: a second
        run would then lock a new file at the same path and send the same batch."""
        if not _same_file(self.path, self.fd):
            raise StateError(f"{self.path}: the lock file was deleted or replaced while this run "
                             "held it, so another run could start on the same batch; stopping. "
                             "Leave the lock file alone (it is never stale: the kernel releases "
                             "it when the process ends), then run again to resume")


@contextmanager
def job_lock(path: Path, job_name: str) -> Iterator[JobLock]:
    """Hold an exclusive ``flock`` on ``path`` or fail at once; never waits, never goes stale.

    A lock on a file that is no longer at ``path`` (deleted or replaced between our open and
    our flock) protects nothing: another run opens the new file. So after locking, the file
    at the path must be the one locked (same device and inode), else lock again.
    """
    fd = -1
    try:
        for _ in range(_TRIES):
            fd = _open(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or \
                    "another process"
                raise AlreadyRunningError(f"{job_name} is already running (pid {holder}, lock "
                                          f"{path}); wait for it to finish") from None
            if _same_file(path, fd):
                break
            os.close(fd)
            fd = -1
        else:
            raise StateError(f"{path}: the lock file keeps being replaced while it is locked; "
                             "is something deleting files in state_dir?")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield JobLock(path, fd)
    finally:
        if fd >= 0:
            os.close(fd)  # closing the descriptor releases the lock


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise StateError(f"{path}: cannot create the lock file: {err.strerror}; check "
                         "state_dir is writable") from None


def _same_file(path: Path, fd: int) -> bool:
    try:
        at_path = os.stat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (at_path.st_dev, at_path.st_ino) == (held.st_dev, held.st_ino)
