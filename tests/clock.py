"""A clock the tests move by hand, so the scheduler is tested without waiting real minutes."""

from __future__ import annotations

import datetime as dt
import threading

__all__ = ["FakeClock"]


class FakeClock:
    """Callable like the service's clock: an aware datetime, changed only by the test."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = _aware(start)
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, **delta: float) -> dt.datetime:
        with self._lock:
            self._now += dt.timedelta(**delta)
            return self._now

    def set(self, moment: dt.datetime) -> None:
        with self._lock:
            self._now = _aware(moment)


def _aware(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError("the service's clock gives aware datetimes: add a tzinfo")
    return moment
