"""When a timetable's runs are due: ``schedule``'s scheduler, on a clock that can be injected.

``schedule`` 1.2 reads the wall clock itself (``datetime.datetime.now()``) and supports time
zones only through pytz. ``TimetableScheduler`` and ``TimetableJob`` keep its builder,
validation and bookkeeping but take the time from an injected clock (so tests never wait real
minutes) and compute the next run with the standard library's ``zoneinfo``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import schedule

from mailbatch.job.timetable import DAYS, Timetable

__all__ = ["Clock", "TimetableJob", "TimetableScheduler"]

Clock = Callable[[], dt.datetime]  # naive local time, the way ``schedule`` keeps next_run


class TimetableScheduler(schedule.Scheduler):
    """A ``schedule.Scheduler`` whose idea of "now" comes from ``clock``."""

    def __init__(self, clock: Clock = dt.datetime.now) -> None:
        super().__init__()
        self.clock = clock

    def every(self, interval: int = 1) -> TimetableJob:
        return TimetableJob(interval, self)

    def add(self, timetable: Timetable, func: Callable[[], Any],
            tag: str | None = None) -> list[schedule.Job]:
        """Add one ``schedule`` job per day of ``timetable`` (or one in all) calling ``func``."""
        jobs = []
        for day in timetable.days or (None,):
            job = self.every(timetable.interval)
            job = getattr(job, day) if day else getattr(job, timetable.unit)
            if timetable.at:
                job = job.at(timetable.at)
            if timetable.zone:
                job.zone = ZoneInfo(timetable.zone)
            if tag:
                job.tag(tag)
            jobs.append(job.do(func))
        return jobs

    @property
    def idle_seconds(self) -> float | None:
        next_run = self.get_next_run()
        return None if next_run is None else (next_run - self.clock()).total_seconds()


class TimetableJob(schedule.Job):
    """A ``schedule.Job`` that reads its scheduler's clock and can use a ``zoneinfo`` zone.

    ``next_run`` stays a naive local time, as in ``schedule``. With a zone, the time of day is
    wall-clock time in that zone across daylight-saving changes: a time that does not exist
    that day runs an hour later, a time that occurs twice runs once.
    """

    def __init__(self, interval: int, scheduler: TimetableScheduler) -> None:
        super().__init__(interval, scheduler)
        self.zone: ZoneInfo | None = None

    def now(self) -> dt.datetime:
        scheduler = self.scheduler
        return scheduler.clock() if isinstance(scheduler, TimetableScheduler) else \
            dt.datetime.now()

    @property
    def should_run(self) -> bool:
        assert self.next_run is not None, "must run _schedule_next_run before"
        return self.now() >= self.next_run

    def run(self) -> Any:
        result = self.job_func()  # type: ignore[misc]
        self.last_run = self.now()
        self._schedule_next_run()
        return result

    def _schedule_next_run(self) -> None:
        """Like ``schedule.Job._schedule_next_run`` (1.2), with our clock and zoneinfo."""
        if self.unit not in ("seconds", "minutes", "hours", "days", "weeks"):
            raise schedule.ScheduleValueError(f"invalid unit {self.unit!r}")
        local_now = self.now()
        now = local_now.astimezone(self.zone) if self.zone else local_now
        moment = now
        if self.start_day is not None:
            moment += dt.timedelta(days=(DAYS.index(self.start_day) - now.weekday()) % 7)
        if self.at_time is not None:
            fields = {"second": self.at_time.second, "microsecond": 0, "fold": 0}
            if self.unit == "days" or self.start_day is not None:
                fields["hour"] = self.at_time.hour
            if self.unit in ("days", "hours") or self.start_day is not None:
                fields["minute"] = self.at_time.minute
            moment = moment.replace(**fields)
        period = dt.timedelta(**{self.unit: self.interval})
        if self.interval != 1:
            moment += period
        while moment <= now:  # same tzinfo: compared as wall-clock times, as intended
            moment += period
        if self.zone is not None:
            moment = moment.astimezone().replace(tzinfo=None)
        self.next_run = moment
