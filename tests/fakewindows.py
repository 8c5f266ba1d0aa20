"""Stand-ins for Windows-only modules, so the Windows branches can run on Linux in the tests.

``FakeMsvcrt`` behaves like ``msvcrt.locking`` as far as mailbatch relies on it: byte-range
locks taken at the descriptor's current position, exclusive between descriptors (not only
between processes, like Windows), an ``OSError(EACCES)`` for a range another descriptor holds
(``LK_NBLCK``) and for unlocking a range not locked (``LK_UNLCK``). Locks live in this process
only; ``install()`` puts the stand-in in ``sys.modules`` and hides ``fcntl``.
"""

from __future__ import annotations

import errno
import os
import sys
import types

__all__ = ["FakeMsvcrt", "install"]


class FakeMsvcrt(types.ModuleType):
    LK_UNLCK, LK_LOCK, LK_NBLCK, LK_RLCK, LK_NBRLCK = 0, 1, 2, 3, 4

    def __init__(self) -> None:
        super().__init__("msvcrt")
        # (device, inode, first byte, length) -> the descriptor holding it
        self.held: dict[tuple[int, int, int, int], int] = {}
        self.calls: list[tuple[int, int, int]] = []  # (mode, position, length)

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        stat = os.fstat(fd)
        start = os.lseek(fd, 0, os.SEEK_CUR)
        self.calls.append((mode, start, nbytes))
        key = (stat.st_dev, stat.st_ino, start, nbytes)
        if mode == self.LK_UNLCK:
            if self.held.get(key) != fd:
                raise OSError(errno.EACCES, "Permission denied")
            del self.held[key]
            return
        if mode != self.LK_NBLCK:
            raise ValueError(f"the stand-in only knows LK_NBLCK and LK_UNLCK, not {mode}")
        for (dev, ino, first, length), holder in self.held.items():
            if (dev, ino) == key[:2] and first < start + nbytes and start < first + length \
                    and holder != fd:
                raise OSError(errno.EACCES, "Permission denied")
        self.held[key] = fd


def install() -> FakeMsvcrt:
    """Make this process look like Windows to ``import fcntl`` / ``import msvcrt``."""
    fake = FakeMsvcrt()
    sys.modules["fcntl"] = None  # type: ignore[assignment]  # "import fcntl" raises ImportError
    sys.modules["msvcrt"] = fake
    return fake
