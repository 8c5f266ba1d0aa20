"""One run at a time per job: an OS file lock that the operating system releases if the process
dies (``flock`` on Linux, macOS and BSD; ``msvcrt.locking`` on Windows)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import ModuleType

from mailbatch.errors import AlreadyRunningError, StateError

try:
    import fcntl
except ImportError:  # Windows: msvcrt, imported where it is used
    fcntl = None  # type: ignore[assignment]

__all__ = ["JobLock", "job_lock"]

_TRIES = 10  # a lock file replaced this many times in a row while we lock it: give up
# Windows locks are mandatory: a locked byte cannot even be read by another process. So the
# byte locked there is one far past the pid written at the start of the file, which a second
# run must be able to read to say who holds the lock.
WINDOWS_LOCKED_BYTE = 1 << 30
_HELD = (errno.EACCES, errno.EAGAIN, getattr(errno, "EDEADLK", errno.EACCES))


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
    """Hold an exclusive lock on ``path`` or fail at once; never waits, never goes stale.

    A lock on a file that is no longer at ``path`` (deleted or replaced between our open and
    our lock) protects nothing: another run opens the new file. So after locking, the file
    at the path must be the one locked (same device and inode), else lock again.
    """
    fd = -1
    locked = False
    try:
        for _ in range(_TRIES):
            fd = _open(path)
            locked = _lock(fd, path)
            if not locked:
                holder = _read_start(fd).decode(errors="replace").strip() or "another process"
                raise AlreadyRunningError(f"{job_name} is already running (pid {holder}, lock "
                                          f"{path}); wait for it to finish")
            if _same_file(path, fd):
                break
            _release(fd)
            locked = False
            os.close(fd)
            fd = -1
        else:
            raise StateError(f"{path}: the lock file keeps being replaced while it is locked; "
                             "is something deleting files in state_dir?")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, str(os.getpid()).encode())
        yield JobLock(path, fd)
    finally:
        if fd >= 0:
            if locked:
                _release(fd)
            os.close(fd)  # closing the descriptor releases the lock in any case


def _lock(fd: int, path: Path) -> bool:
    """Lock ``fd`` exclusively without waiting: True if locked, False if another holds it."""
    posix = _fcntl()
    try:
        if posix is not None:
            posix.flock(fd, posix.LOCK_EX | posix.LOCK_NB)
        else:
            msvcrt = _msvcrt()
            os.lseek(fd, WINDOWS_LOCKED_BYTE, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as err:
        if isinstance(err, BlockingIOError) or err.errno in _HELD:
            return False
        raise StateError(f"{path}: cannot lock the lock file: {err.strerror or err}; keep "
                         "state_dir on a local disk (file locks are unreliable on some "
                         "network file systems)") from None
    return True


def _release(fd: int) -> None:
    """Unlock before closing: Windows may release a lock of a closed file only later."""
    if _fcntl() is not None:
        return  # flock: closing the descriptor is enough
    with suppress(OSError):
        msvcrt = _msvcrt()
        os.lseek(fd, WINDOWS_LOCKED_BYTE, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _fcntl() -> ModuleType | None:
    """fcntl, or None where there is none (looked up at each use: a test may hide it)."""
    return fcntl


def _msvcrt() -> ModuleType:
    import msvcrt  # Windows only (a test may put a stand-in in sys.modules)

    return msvcrt


def _read_start(fd: int) -> bytes:
    """The first bytes of the lock file: the holder's pid (never a locked byte)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 64)
    except OSError:
        return b""


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
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
