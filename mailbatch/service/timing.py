"""When a timetable's runs are due: ``schedule``'s scheduler on an injected, time-zone-aware clock.

``schedule`` 1.2 reads the wall clock itself, keeps ``next_run`` as a naive local time and
knows time zones only through pytz; next to a daylight-saving change that gives a next run
already in the past (fired again at every tick) or an hour off. ``TimetableScheduler`` and
``TimetableJob`` keep its builder (which validates), its bookkeeping and ``run_pending``, but
every moment here is an aware datetime from an injected clock, and the next run is computed
here, always later than now:

- a time of day (``every day at 02:30 Europe/Berlin``, named days) is wall-clock time in the
  timetable's zone, or the machine's: one run a day, at the first of a time that occurs twice
  (the autumn change), an hour later for a time that does not exist (the spring change);
- an interval (``every 10 minutes``) is elapsed time, each run one interval after the
  previous one was due, so a tick that comes late does not push the next runs later;
- the first run of ``every 2 days at 06:00`` (or ``every 3 hours at :15``) is the next
  06:00 (the next :15); the interval counts from there.

Runs missed while the service was not running (or the machine slept) are not caught up.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import schedule

from mailbatch.job.timetable import DAYS, Timetable

__all__ = ["Clock", "TimetableJob", "TimetableScheduler", "local_zone", "system_clock"]

Clock = Callable[[], dt.datetime]  # an aware datetime: the moment, in any zone
DAY = dt.timedelta(days=1)
_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def local_zone() -> dt.tzinfo:
    """The machine's time zone with its daylight-saving rules (``TZ``, else /etc/localtime),
    for times of day written without a zone; its current UTC offset if neither can be read."""
    name = os.environ.get("TZ", "").removeprefix(":")
    try:
        if name.startswith("/"):
            with open(name, "rb") as file:
                return ZoneInfo.from_file(file, key=name)
        if name:
            return ZoneInfo(name)
        with open("/etc/localtime", "rb") as file:
            return ZoneInfo.from_file(file, key="localtime")
    except (ZoneInfoNotFoundError, ValueError, OSError):
        fixed = dt.datetime.now().astimezone().tzinfo  # what the C library says now
        assert fixed is not None
        return fixed


class TimetableScheduler(schedule.Scheduler):
    """A ``schedule.Scheduler`` whose "now" comes from ``clock``; ``zone`` is the zone of
    times of day written without one (default: the machine's)."""

    def __init__(self, clock: Clock = system_clock, zone: dt.tzinfo | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.zone = zone or local_zone()

    def every(self, interval: int = 1) -> TimetableJob:
        return TimetableJob(interval, self)

    def add(self, timetable: Timetable, func: Callable[[], Any],
            tag: str | None = None) -> list[schedule.Job]:
        """Add one ``schedule`` job per day of ``timetable`` (or one in all) calling ``func``."""
        jobs: list[schedule.Job] = []
        try:
            for day in timetable.days or (None,):
                job: schedule.Job = self.every(timetable.interval)
                job = getattr(job, day) if day else getattr(job, timetable.unit)
                if timetable.at:
                    job = job.at(timetable.at)
                assert isinstance(job, TimetableJob)  # schedule's builder returns the job
                job.zone = ZoneInfo(timetable.zone) if timetable.zone else self.zone
                if tag:
                    job.tag(tag)
                jobs.append(job.do(func))
        except BaseException:  # all of the timetable or none of it
            for job in jobs:
                self.cancel_job(job)
            raise
        return jobs

    @property
    def idle_seconds(self) -> float | None:
        next_run = self.get_next_run()
        return None if next_run is None else (next_run - self.clock()).total_seconds()


class TimetableJob(schedule.Job):
    """A ``schedule.Job`` on its scheduler's clock, with an aware ``next_run`` (in UTC)."""

    def __init__(self, interval: int, scheduler: TimetableScheduler) -> None:
        super().__init__(interval, scheduler)
        self.zone: dt.tzinfo = scheduler.zone

    def now(self) -> dt.datetime:
        assert isinstance(self.scheduler, TimetableScheduler)
        return self.scheduler.clock()

    @property
    def should_run(self) -> bool:
        assert self.next_run is not None, "must run _schedule_next_run before"
        return self.now() >= self.next_run

    def run(self) -> Any:
        """Call the job; whatever happens, the next run is computed (never left in the past,
        where it would fire at every tick)."""
        try:
            return self.job_func()  # type: ignore[misc]
        finally:
            self.last_run = self.now()
            self._schedule_next_run()

    def _schedule_next_run(self) -> None:
        now = self.now()
        if self.unit not in ("seconds", "minutes", "hours", "days", "weeks") or \
                now.tzinfo is None:
            raise schedule.ScheduleValueError(f"invalid unit {self.unit!r} or naive clock")
        if self.at_time is None:
            moment = _after(self.next_run or now, self.period, now)
        elif self.start_day is not None:
            moment = self._named_day(now)
        elif self.unit == "days":
            moment = self._day(now)
        else:
            moment = self._within_hour(now)
        assert moment > now, (moment, now)
        self.next_run = moment

    @property
    def period(self) -> dt.timedelta:
        assert self.unit is not None  # set by the builder before any run is scheduled
        return dt.timedelta(seconds=self.interval * _SECONDS[self.unit])

    def _wall(self, day: dt.date) -> dt.datetime:
        """The moment of the time of day on ``day`` in the zone: the first of a time that
        occurs twice (fold 0), an hour later for one that does not exist (fold 0 in a gap
        takes the offset from before the change)."""
        assert self.at_time is not None
        return dt.datetime.combine(day, self.at_time, tzinfo=self.zone).astimezone(dt.UTC)

    def _named_day(self, now: dt.datetime) -> dt.datetime:
        today = now.astimezone(self.zone).date()
        weekday = DAYS.index(self.start_day or "")
        for offset in range(8):
            day = today + offset * DAY
            if day.weekday() == weekday and self._wall(day) > now:
                return self._wall(day)
        raise AssertionError("a week has every weekday")

    def _day(self, now: dt.datetime) -> dt.datetime:
        """``every N days at HH:MM``: the next HH:MM first, then every N days from the day of
        the previous run."""
        if self.next_run is None:
            day, step = now.astimezone(self.zone).date(), DAY
        else:
            day, step = self.next_run.astimezone(self.zone).date() + self.interval * DAY, \
                self.interval * DAY
        while self._wall(day) <= now:
            day += step
        return self._wall(day)

    def _within_hour(self, now: dt.datetime) -> dt.datetime:
        """``every N hours at :MM``, ``every N minutes at :SS``: the next such moment first
        (counted in elapsed time, so an hour that occurs twice has its run twice), then every
        N hours (minutes) after the previous one."""
        if self.next_run is not None:
            return _after(self.next_run, self.period, now)
        assert self.at_time is not None
        local = now.astimezone(self.zone).replace(second=self.at_time.second, microsecond=0)
        if self.unit == "hours":
            local = local.replace(minute=self.at_time.minute)
        first = local.astimezone(dt.UTC)
        return _after(first, self.period / self.interval, now, first=True)


def _after(start: dt.datetime, period: dt.timedelta, now: dt.datetime,
           first: bool = False) -> dt.datetime:
    """The first of ``start`` (if ``first``) or ``start + period``, ``start + 2 * period``,
    ... that is later than ``now``; computed, not stepped, so a clock that jumped a year
    costs nothing."""
    moment = start if first else start + period
    if moment <= now:
        moment += period * ((now - moment) // period + 1)
    return moment
