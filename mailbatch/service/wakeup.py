"""What wakes the service's loop at once: a signal, a reload asked for, a run that ended, a stop.

The loop sleeps until its next job is due or its next look at the job files (at most
``poll`` seconds); without this a SIGHUP or a finished run would wait for the end of that
sleep. The loop sleeps in ``select`` on a socket pair; ``set()`` writes a byte to it from any
thread, and while the loop runs in the main thread every signal writes one too
(``signal.set_wakeup_fd``, at the C level), so the Python signal handlers need take no lock.
"""

from __future__ import annotations

import select
import signal
import socket
import threading
from collections.abc import Callable

__all__ = ["Wakeup", "WakingEvent"]


class Wakeup:
    """A sleep that ``set()`` (or any signal, inside ``with``) ends at once."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._lock = threading.Lock()  # set() never writes to a closed (reused) descriptor
        self._previous: int | None = None

    def set(self) -> None:
        """Wake the sleeper; never blocks (callable from a signal handler)."""
        if not self._lock.acquire(blocking=False):
            return  # closing: nobody sleeps any more
        try:
            self._writer.send(b"\0")
        except OSError:  # full (already awake) or closed
            pass
        finally:
            self._lock.release()

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, less if woken; forget what woke it."""
        select.select([self._reader], [], [], max(0.0, timeout))
        try:
            while self._reader.recv(4096):
                pass
        except OSError:  # nothing more to read
            pass

    def __enter__(self) -> Wakeup:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.set_wakeup_fd(self._writer.fileno(),
                                                  warn_on_full_buffer=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.set_wakeup_fd(self._previous)
        with self._lock:
            self._reader.close()
            self._writer.close()


class WakingEvent(threading.Event):
    """An event whose ``set()`` also calls ``wake``: the service's stop flag, so that a stop
    (SIGTERM, Ctrl-C, a test) ends the loop's sleep at once."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def set(self) -> None:
        super().set()
        self._wake()
