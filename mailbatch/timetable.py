"""Timetables: readable forms such as ``every monday at 08:00`` mapped onto ``schedule`` jobs.

``schedule`` 1.2 reads the wall clock itself (``datetime.datetime.now()``) and supports time
zones only through pytz. ``TimetableScheduler`` and ``TimetableJob`` keep its builder,
validation and bookkeeping but take the time from an injected clock (so tests never wait real
minutes) and compute the next run with the standard library's ``zoneinfo``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import schedule

__all__ = ["FORMS", "Clock", "Timetable", "TimetableJob", "TimetableScheduler",
           "parse_timetable"]

Clock = Callable[[], dt.datetime]  # naive local time, the way ``schedule`` keeps next_run

FORMS = ("every 15 minutes", "every 2 hours", "every day at 07:30",
         "every monday at 08:00", "every monday and thursday at 08:00",
         "every weekday at 08:00 Europe/Paris", "every hour at :15", "every 30 seconds")
ACCEPTED = "accepted forms: " + ", ".join(FORMS)

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_GROUPS = {"weekday": DAYS[:5], "weekdays": DAYS[:5], "weekend": DAYS[5:]}
_UNITS = {u: u if u.endswith("s") else u + "s" for u in
          ("second", "seconds", "minute", "minutes", "hour", "hours", "day", "days",
           "week", "weeks")}
_TIME_OF_DAY = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


@dataclass(frozen=True)
class Timetable:
    """A parsed timetable: either every ``interval`` ``unit``, or on ``days`` at ``at``."""

    text: str
    unit: str  # seconds, minutes, hours, days or weeks (weeks for named days)
    interval: int = 1
    days: tuple[str, ...] = ()
    at: str | None = None  # in the form schedule's Job.at() expects
    zone: str | None = None  # an IANA time zone for ``at``; None is the machine's local time

    def apply(self, scheduler: schedule.Scheduler, func: Callable[[], Any],
              tag: str | None = None) -> list[schedule.Job]:
        """Add one ``schedule`` job per day (or one in all) calling ``func``."""
        jobs = []
        for day in self.days or (None,):
            job = scheduler.every(self.interval)
            job = getattr(job, day) if day else getattr(job, self.unit)
            if self.at:
                job = job.at(self.at)
            if self.zone:
                if not isinstance(job, TimetableJob):
                    raise TypeError("a timetable with a time zone needs a TimetableScheduler")
                job.zone = ZoneInfo(self.zone)
            if tag:
                job.tag(tag)
            jobs.append(job.do(func))
        return jobs


def parse_timetable(text: str) -> Timetable:
    """Parse ``text``; raise ValueError saying what is wrong and which forms are accepted."""
    words = text.replace(",", " , ").split()
    lower = [w.lower() for w in words]
    if not words:
        raise ValueError(f"the schedule is empty; {ACCEPTED}")
    if lower[0] != "every" or len(words) < 2:
        raise _invalid(text, "it must start with 'every'")
    head, at_part = lower[1:], []
    if "at" in head:
        split = head.index("at")
        head, at_part = head[:split], words[split + 2:]
    if head and head[0].isdigit():
        interval, head = int(head[0]), head[1:]
        if interval < 1:
            raise _invalid(text, "the interval must be at least 1")
    else:
        interval = 1
    if len(head) == 1 and head[0] in _UNITS:
        timetable = Timetable(text, _UNITS[head[0]], interval)
    elif head and interval == 1:
        timetable = Timetable(text, "weeks", days=_days(text, head))
    else:
        raise _invalid(text, "expected a unit (seconds, minutes, hours, days, weeks) "
                             "or day names")
    if at_part:
        timetable = _with_time(timetable, at_part)
    elif timetable.days:
        raise _invalid(text, f"say at what time, e.g. every {' '.join(head)} at 08:00")
    _check(timetable)
    return timetable


def _days(text: str, words: list[str]) -> tuple[str, ...]:
    days: list[str] = []
    expect_day = True
    for word in words:
        if expect_day and word in DAYS:
            days.append(word)
        elif expect_day and word in _GROUPS:
            days.extend(_GROUPS[word])
        elif not expect_day and word in (",", "and"):
            pass
        else:
            raise _invalid(text, f"{word!r} is not a unit or a day name")
        expect_day = not expect_day
    if expect_day:  # ends with a separator
        raise _invalid(text, "a day name is missing")
    return tuple(dict.fromkeys(days))


def _with_time(timetable: Timetable, words: list[str]) -> Timetable:
    text, unit = timetable.text, timetable.unit
    if len(words) > 2:
        raise _invalid(text, f"unexpected {' '.join(words[2:])!r} after the time zone")
    at, zone = words[0], (words[1] if len(words) == 2 else None)
    if unit in ("days", "weeks"):
        match = _TIME_OF_DAY.match(at)
        if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59 or \
                int(match.group(3) or 0) > 59:
            raise _invalid(text, f"{at!r} is not a time of day; write it as HH:MM, e.g. 07:30")
        at = f"{int(match.group(1)):02d}:{match.group(2)}" + (
            f":{match.group(3)}" if match.group(3) else "")
    elif zone:
        raise _invalid(text, "a time zone goes only with a time of day "
                             "(every day at 07:30 Europe/Paris)")
    if zone:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise _invalid(text, f"unknown time zone {zone!r}; use a name such as "
                                 "Europe/Paris, America/New_York or UTC") from None
    return Timetable(text, unit, timetable.interval, timetable.days, at, zone)


def _check(timetable: Timetable) -> None:
    """Let ``schedule`` itself reject what it cannot run (``every 30 seconds at :10``)."""
    if timetable.days and timetable.unit != "weeks":
        raise _invalid(timetable.text, "day names cannot be combined with an interval")
    try:
        timetable.apply(TimetableScheduler(), lambda: None)
    except schedule.ScheduleError as err:
        hint = str(err)
        if timetable.unit in ("seconds", "weeks") and timetable.at:
            hint = f"'at' does not go with {timetable.unit}"
        raise _invalid(timetable.text, hint) from None


def _invalid(text: str, reason: str) -> ValueError:
    return ValueError(f"{text!r} is not a timetable: {reason}; {ACCEPTED}")


class TimetableScheduler(schedule.Scheduler):
    """A ``schedule.Scheduler`` whose idea of "now" comes from ``clock``."""

    def __init__(self, clock: Clock = dt.datetime.now) -> None:
        super().__init__()
        self.clock = clock

    def every(self, interval: int = 1) -> TimetableJob:
        return TimetableJob(interval, self)

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
