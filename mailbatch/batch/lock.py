"""One run at a time per job: an OS file lock that the kernel releases if the process dies."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mailbatch.errors import AlreadyRunningError, StateError

__all__ = ["job_lock"]


@contextmanager
def job_lock(path: Path, job_name: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` or fail at once; never waits, never goes stale."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise StateError(f"{path}: cannot create the lock file: {err.strerror}; check "
                         "state_dir is writable") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise AlreadyRunningError(f"{job_name} is already running (pid {holder}, lock "
                                      f"{path}); wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
