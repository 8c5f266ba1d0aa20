"""Process signals: SIGINT/SIGTERM stop a run between messages, SIGHUP reloads the scheduler.

Windows has no SIGHUP (the scheduler then re-reads job files at its next poll only); Ctrl-Break
(SIGBREAK) stops a run there as Ctrl-C does.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

__all__ = ["reload_on_sighup", "stop_on_signals"]

log = logging.getLogger("mailbatch")

_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK")
                      if hasattr(signal, name))


class stop_on_signals:
    """SIGINT and SIGTERM set ``stop`` so the message in flight finishes and the journal and
    report are written; a second signal aborts at once."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()  # before logging: a second signal arriving meanwhile must abort
        log.warning("received %s: finishing the message in flight, then stopping",
                    signal.Signals(signum).name)

    def __enter__(self) -> stop_on_signals:
        if threading.current_thread() is threading.main_thread():
            for signum in _STOP_SIGNALS:
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


class reload_on_sighup:
    """SIGHUP re-reads the job files at once instead of at the next poll."""

    def __init__(self, reload: Callable[[], None]) -> None:
        self.reload = reload
        self.previous: object = None

    def __enter__(self) -> reload_on_sighup:
        hangup = getattr(signal, "SIGHUP", None)  # not on Windows: the next poll reloads
        if hangup is not None and threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(hangup, lambda signum, frame: self.reload())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGHUP, self.previous)  # type: ignore[arg-type]
