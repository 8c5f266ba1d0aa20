"""The ``schedule:`` key: readable timetables such as ``every monday at 08:00``, parsed and checked.

Only what a timetable says lives here; when its runs fall due is service/timing.py's concern.
The rules below are those of the ``schedule`` package (1.2) whose builder the service uses, so
a timetable accepted here is one it accepts. Every number is range-checked here: an interval is
at most a year, so no timetable can make the service compute a date it cannot represent.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["ACCEPTED", "DAYS", "FORMS", "MAX_PERIOD", "Timetable", "parse_timetable"]

FORMS = ("every 15 minutes", "every 2 hours", "every day at 07:30",
         "every monday at 08:00", "every monday and thursday at 08:00",
         "every weekday at 08:00 Europe/Paris", "every hour at :15", "every 30 seconds")
ACCEPTED = "accepted forms: " + ", ".join(FORMS)

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_GROUPS = {"weekday": DAYS[:5], "weekdays": DAYS[:5], "weekend": DAYS[5:]}
_UNITS = {u: u if u.endswith("s") else u + "s" for u in
          ("second", "seconds", "minute", "minutes", "hour", "hours", "day", "days",
           "week", "weeks")}
MAX_PERIOD = dt.timedelta(days=366)  # the longest interval: a year, leap or not
_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
_NUMBER = re.compile(r"^[0-9]+$")
_TIME_OF_DAY = re.compile(r"^([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?$")
# What ``schedule``'s Job.at() accepts for each unit, and what it says otherwise.
_AT_FORMATS = {
    "days": (r"^[0-2][0-9]:[0-5][0-9](:[0-5][0-9])?$",
             "Invalid time format for a daily job (valid format is HH:MM(:SS)?)"),
    "hours": (r"^([0-5][0-9])?:[0-5][0-9]$",
              "Invalid time format for an hourly job (valid format is (MM)?:SS)"),
    "minutes": (r"^:[0-5][0-9]$", "Invalid time format for a minutely job (valid format is :SS)"),
}


@dataclass(frozen=True)
class Timetable:
    """A parsed timetable: either every ``interval`` ``unit``, or on ``days`` at ``at``."""

    text: str
    unit: str  # seconds, minutes, hours, days or weeks (weeks for named days)
    interval: int = 1
    days: tuple[str, ...] = ()
    at: str | None = None  # in the form schedule's Job.at() expects
    zone: str | None = None  # an IANA time zone for ``at``; None is the machine's local time

    @property
    def period(self) -> dt.timedelta:
        """The time between two runs: ``interval`` ``unit`` (a week for named days)."""
        return dt.timedelta(seconds=self.interval * _SECONDS[self.unit])


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
        if not at_part:
            raise _invalid(text, "a time is missing after 'at'")
    if head and _NUMBER.match(head[0]):
        interval, head = _interval(text, head[0]), head[1:]
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


def _interval(text: str, word: str) -> int:
    """The number of an interval: at least 1, and (checked with the unit) at most a year."""
    digits = word.lstrip("0")
    if len(digits) > 9:  # more than a year in any unit; int() of 5,000 digits is an error
        raise _invalid(text, f"the interval {word[:20]} is too long; {_LONGEST}")
    if not digits:
        raise _invalid(text, "the interval must be at least 1")
    return int(digits)


_LONGEST = ("the longest is a year (366 days, 52 weeks, 8784 hours, 527040 minutes, "
            "31622400 seconds)")


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
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise _invalid(text, f"unknown time zone {zone!r}; use a name such as "
                                 "Europe/Paris, America/New_York or UTC") from None
    return Timetable(text, unit, timetable.interval, timetable.days, at, zone)


def _check(timetable: Timetable) -> None:
    """Refuse what ``schedule`` cannot run (``every 30 seconds at :10``), as it would."""
    if timetable.days and timetable.unit != "weeks":
        raise _invalid(timetable.text, "day names cannot be combined with an interval")
    if timetable.interval * _SECONDS[timetable.unit] > MAX_PERIOD.total_seconds():
        raise _invalid(timetable.text, f"every {timetable.interval} {timetable.unit} is too "
                                       f"long; {_LONGEST}")
    if timetable.at is None:
        return
    unit = "days" if timetable.days else timetable.unit
    if unit not in _AT_FORMATS:
        raise _invalid(timetable.text, f"'at' does not go with {unit}")
    pattern, message = _AT_FORMATS[unit]
    if not re.match(pattern, timetable.at, re.ASCII):
        raise _invalid(timetable.text, message)


def _invalid(text: str, reason: str) -> ValueError:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return ValueError(f"{shown!r} is not a timetable: {reason}; {ACCEPTED}")
