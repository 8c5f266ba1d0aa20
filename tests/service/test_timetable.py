"""Timetables: which readable forms are accepted, what they mean, and when they next run."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from mailbatch.errors import JobError
from mailbatch.job.model import load_job
from mailbatch.job.timetable import FORMS, parse_timetable
from mailbatch.service.timing import TimetableScheduler
from tests.clock import FakeClock
from tests.helpers import write_job

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")
PARIS = ZoneInfo("Europe/Paris")

ACCEPTED = [
    # text, (unit, interval, days, at, zone)
    ("every 15 minutes", ("minutes", 15, (), None, None)),
    ("every 2 hours", ("hours", 2, (), None, None)),
    ("every 30 seconds", ("seconds", 30, (), None, None)),
    ("every 1 second", ("seconds", 1, (), None, None)),
    ("every minute", ("minutes", 1, (), None, None)),
    ("every hour", ("hours", 1, (), None, None)),
    ("every day", ("days", 1, (), None, None)),
    ("every 2 weeks", ("weeks", 2, (), None, None)),
    ("every day at 07:30", ("days", 1, (), "07:30", None)),
    ("every day at 7:30", ("days", 1, (), "07:30", None)),
    ("every day at 07:30:15", ("days", 1, (), "07:30:15", None)),
    ("every day at 07:30 Europe/Paris", ("days", 1, (), "07:30", "Europe/Paris")),
    ("every 2 days at 06:00", ("days", 2, (), "06:00", None)),
    ("every monday at 08:00", ("weeks", 1, ("monday",), "08:00", None)),
    ("Every Monday At 08:00 UTC", ("weeks", 1, ("monday",), "08:00", "UTC")),
    ("every monday and thursday at 08:00", ("weeks", 1, ("monday", "thursday"), "08:00", None)),
    ("every monday, thursday at 08:00", ("weeks", 1, ("monday", "thursday"), "08:00", None)),
    ("every weekday at 08:00 Europe/Paris", ("weeks", 1, WEEKDAYS, "08:00", "Europe/Paris")),
    ("every weekend at 10:00", ("weeks", 1, ("saturday", "sunday"), "10:00", None)),
    ("every hour at :15", ("hours", 1, (), ":15", None)),
    ("every 2 hours at :15", ("hours", 2, (), ":15", None)),
    ("every minute at :30", ("minutes", 1, (), ":30", None)),
    ("  every   15   minutes  ", ("minutes", 15, (), None, None)),
]

REJECTED = [
    # text, what the message must say besides the accepted forms
    ("", "the schedule is empty"),
    ("daily", "it must start with 'every'"),
    ("every", "it must start with 'every'"),
    ("every mondy at 08:00", "'mondy' is not a unit or a day name"),
    ("every monday", "say at what time, e.g. every monday at 08:00"),
    ("every 0 minutes", "the interval must be at least 1"),
    ("every -5 minutes", "'-5' is not a unit or a day name"),
    ("every 1.5 hours", "'1.5' is not a unit or a day name"),
    ("every 2 mondays at 08:00", "expected a unit"),
    ("every 15 minutes Europe/Paris", "expected a unit"),
    ("every day at 25:00", "'25:00' is not a time of day"),
    ("every day at 07:60", "'07:60' is not a time of day"),
    ("every day at noon", "'noon' is not a time of day"),
    ("every day at 07:30 Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ("every day at 07:30 ../../etc/passwd", "unknown time zone"),
    ("every day at 07:30 Europe/Paris sharp", "unexpected 'sharp' after the time zone"),
    ("every hour at :15 UTC", "a time zone goes only with a time of day"),
    ("every 30 seconds at :10", "'at' does not go with seconds"),
    ("every week at 08:00", "'at' does not go with weeks"),
    ("every hour at 08:00:00", "Invalid time format for an hourly job"),
    ("every monday and at 08:00", "a day name is missing"),
    ("every monday thursday at 08:00", "'thursday' is not a unit or a day name"),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED, ids=[t for t, _ in ACCEPTED])
def test_accepted_form_is_parsed_into_unit_interval_days_time_and_zone(text, expected):
    timetable = parse_timetable(text)
    assert (timetable.unit, timetable.interval, timetable.days, timetable.at,
            timetable.zone) == expected
    assert timetable.text == text


@pytest.mark.parametrize(("text", "reason"), REJECTED, ids=[t or "empty" for t, _ in REJECTED])
def test_rejected_form_says_why_and_lists_the_accepted_forms(text, reason):
    with pytest.raises(ValueError) as caught:
        parse_timetable(text)
    message = str(caught.value)
    assert reason in message
    assert "accepted forms: " + ", ".join(FORMS) in message
    assert "\n" not in message


@pytest.mark.parametrize("form", FORMS)
def test_every_form_the_error_message_offers_is_itself_accepted(form):
    parse_timetable(form)


def test_job_file_with_a_bad_schedule_is_an_error_naming_file_line_and_key(tmp_path):
    path = write_job(tmp_path, """
        smtp: {host: mail.example.org}
        from: reports@example.org
        subject: Hi
        text: Hello
        recipients: [{email: ann@example.org}]
        schedule: every mondy at 08:00
    """)
    with pytest.raises(JobError) as caught:
        load_job(path)
    assert str(caught.value).startswith(f"{path}:6: schedule: 'every mondy at 08:00' is not a "
                                        "timetable: 'mondy' is not a unit or a day name; "
                                        "accepted forms: every 15 minutes")
    assert caught.value.exit_code == 78


def test_job_file_with_a_good_schedule_keeps_its_text(tmp_path):
    path = write_job(tmp_path, """
        smtp: {host: mail.example.org}
        from: reports@example.org
        subject: Hi
        text: Hello
        recipients: [{email: ann@example.org}]
        schedule: every weekday at 08:00 Europe/Paris
    """)
    assert load_job(path).schedule == "every weekday at 08:00 Europe/Paris"


# -- when they run: schedule driven by a clock the test moves ---------------------------------


def next_runs(text: str, now: dt.datetime) -> list[dt.datetime]:
    scheduler = TimetableScheduler(FakeClock(now))
    return sorted(job.next_run for job in scheduler.add(parse_timetable(text), lambda: None))


def local(moment: dt.datetime) -> dt.datetime:
    """An aware moment as the naive local time that schedule and the clock use."""
    return moment.astimezone().replace(tzinfo=None)


WEDNESDAY = dt.datetime(2026, 6, 3, 10, 0)  # naive local time, like datetime.now()


@pytest.mark.parametrize(("text", "expected"), [
    ("every 15 minutes", dt.datetime(2026, 6, 3, 10, 15)),
    ("every 2 hours", dt.datetime(2026, 6, 3, 12, 0)),
    ("every day at 07:30", dt.datetime(2026, 6, 4, 7, 30)),
    ("every day at 11:00", dt.datetime(2026, 6, 3, 11, 0)),
    ("every 2 days at 11:00", dt.datetime(2026, 6, 5, 11, 0)),
    ("every monday at 08:00", dt.datetime(2026, 6, 8, 8, 0)),
    ("every wednesday at 09:00", dt.datetime(2026, 6, 10, 9, 0)),
    ("every wednesday at 11:00", dt.datetime(2026, 6, 3, 11, 0)),
    ("every hour at :15", dt.datetime(2026, 6, 3, 10, 15)),
    ("every minute at :30", dt.datetime(2026, 6, 3, 10, 0, 30)),
])
def test_next_run_follows_the_clock_not_the_real_time(text, expected):
    assert next_runs(text, WEDNESDAY)[0] == expected


def test_each_named_day_gets_its_own_run():
    runs = next_runs("every monday and thursday at 08:00", WEDNESDAY)
    assert runs == [dt.datetime(2026, 6, 4, 8, 0), dt.datetime(2026, 6, 8, 8, 0)]


def test_time_in_a_zone_stays_wall_clock_time_across_a_daylight_saving_change():
    before = local(dt.datetime(2026, 3, 28, 8, 0, tzinfo=PARIS))  # Saturday, CET (+01:00)
    clock = FakeClock(before)
    scheduler = TimetableScheduler(clock)
    ran = []
    [job] = scheduler.add(parse_timetable("every day at 07:30 Europe/Paris"),
                          lambda: ran.append(clock()))
    first = job.next_run.astimezone(PARIS)
    assert first == dt.datetime(2026, 3, 29, 7, 30, tzinfo=PARIS)  # Sunday, CEST (+02:00)
    assert first.utcoffset() == dt.timedelta(hours=2)
    clock.set(job.next_run)
    scheduler.run_pending()
    assert len(ran) == 1
    assert job.next_run.astimezone(PARIS) == dt.datetime(2026, 3, 30, 7, 30, tzinfo=PARIS)


def test_time_that_does_not_exist_on_the_change_day_runs_an_hour_later():
    clock = FakeClock(local(dt.datetime(2026, 3, 28, 12, 0, tzinfo=PARIS)))
    [job] = TimetableScheduler(clock).add(parse_timetable("every day at 02:30 Europe/Paris"),
                                          lambda: None)
    assert job.next_run.astimezone(PARIS).timetuple()[:5] == (2026, 3, 29, 3, 30)


def test_time_that_occurs_twice_on_the_change_day_runs_once():
    clock = FakeClock(local(dt.datetime(2026, 10, 24, 12, 0, tzinfo=PARIS)))
    scheduler = TimetableScheduler(clock)
    ran = []
    [job] = scheduler.add(parse_timetable("every day at 02:30 Europe/Paris"),
                          lambda: ran.append(1))
    first = job.next_run
    assert first.astimezone(PARIS).utcoffset() == dt.timedelta(hours=2)  # the first 02:30
    clock.set(first)
    scheduler.run_pending()
    clock.set(first + dt.timedelta(hours=1))  # the second 02:30, an hour later
    scheduler.run_pending()
    assert ran == [1]
    assert job.next_run.astimezone(PARIS) == dt.datetime(2026, 10, 26, 2, 30, tzinfo=PARIS)


def test_due_job_runs_only_once_the_clock_reaches_it_and_is_then_rescheduled():
    clock = FakeClock(WEDNESDAY)
    scheduler = TimetableScheduler(clock)
    ran = []
    scheduler.add(parse_timetable("every 15 minutes"), lambda: ran.append(clock()))
    assert scheduler.idle_seconds == 15 * 60
    clock.advance(minutes=14, seconds=59)
    scheduler.run_pending()
    assert ran == []
    clock.advance(seconds=1)
    scheduler.run_pending()
    assert ran == [dt.datetime(2026, 6, 3, 10, 15)]
    assert scheduler.next_run == dt.datetime(2026, 6, 3, 10, 30)
    clock.advance(hours=3)  # missed runs are not caught up: one run, then the next slot
    scheduler.run_pending()
    assert len(ran) == 2
    assert scheduler.next_run == dt.datetime(2026, 6, 3, 13, 30)
