"""Timetables: which readable forms are accepted and what they mean (when they run: test_timing)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbatch.errors import JobError
from mailbatch.job.model import load_job
from mailbatch.job.timetable import FORMS, parse_timetable
from mailbatch.service.timing import TimetableScheduler
from tests.clock import FakeClock
from tests.helpers import write_job

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")

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
    ("every 52 weeks", ("weeks", 52, (), None, None)),
    ("every 366 days", ("days", 366, (), None, None)),
    ("every 8784 hours", ("hours", 8784, (), None, None)),
    ("every 31622400 seconds", ("seconds", 31622400, (), None, None)),
    ("every 007 minutes", ("minutes", 7, (), None, None)),
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
    ("every 000 minutes", "the interval must be at least 1"),
    ("every 100000000 weeks", "every 100000000 weeks is too long; the longest is a year"),
    ("every 99999999999 days", "the interval 99999999999 is too long; the longest is a year"),
    ("every 53 weeks", "every 53 weeks is too long"),
    ("every 367 days", "every 367 days is too long"),
    ("every 31622401 seconds", "every 31622401 seconds is too long"),
    ("every " + "9" * 5000 + " seconds", "is too long; the longest is a year"),
    ("every \u0663 days", "'\u0663' is not a unit or a day name"),  # an Arabic-Indic 3
    ("every day at \u0660\u0667:\u0663\u0660", "is not a time of day"),
    ("every day at", "a time is missing after 'at'"),
    ("every day at 07:30 " + "x" * 5000, "unknown time zone"),
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


def test_a_long_rejected_timetable_is_shown_shortened_in_its_error():
    with pytest.raises(ValueError) as caught:
        parse_timetable("every " + "9" * 5000 + " seconds")
    assert len(str(caught.value)) < 500


# -- generated: no text makes the parser, or the scheduler after it, fail another way --------

NUMBERS = st.one_of(st.just(""), st.integers(1, 400).map(str), st.integers(0, 10 ** 12).map(str),
                    st.sampled_from(["007", "1.5", "-1", "\u0663"]))
HEADS = st.one_of(
    st.sampled_from(["second", "seconds", "minute", "minutes", "hour", "hours", "day", "days",
                     "week", "weeks", "fortnight"]),
    st.lists(st.sampled_from(["monday", "sunday", "weekday", "weekend", "mondy"]), min_size=1,
             max_size=3).map(" and ".join))
TIMES = st.one_of(
    st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59)),
    st.integers(0, 59).map(lambda s: f":{s:02d}"), st.just(""),
    st.builds(lambda h, m, s: f"{h:02d}:{m:02d}" + ("" if s is None else f":{s:02d}"),
              st.integers(0, 25), st.integers(0, 61), st.none() | st.integers(0, 61)),
    st.builds(lambda m, s: f"{m:02d}:{s:02d}", st.integers(0, 61), st.integers(0, 61)),
    st.integers(0, 61).map(lambda s: f":{s:02d}"), st.sampled_from(["noon", ""]))
ZONES = st.sampled_from(["", "", "Europe/Paris", "America/New_York", "Australia/Lord_Howe",
                         "Asia/Kathmandu", "UTC", "Mars/Olympus", "../etc"])
TEXTS = st.one_of(
    st.builds(lambda n, head, at, zone: f"every {n} {head}" + (f" at {at} {zone}" if at else ""),
              NUMBERS, HEADS, TIMES, ZONES),
    st.builds(lambda rest: "every " + rest, st.text(max_size=30)))
MOMENTS = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2200, 1, 1),
                       timezones=st.sampled_from([dt.UTC]))


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, now=MOMENTS)
def test_any_text_is_a_timetable_that_schedules_in_the_future_or_one_clear_line(text, now):
    try:
        timetable = parse_timetable(text)
    except ValueError as err:
        assert ("\n" not in str(err) and "is not a timetable" in str(err)) or \
            "the schedule is empty" in str(err)
        return
    clock = FakeClock(now)
    jobs = TimetableScheduler(clock).add(timetable, lambda: None)
    for job in jobs:
        first = job.next_run
        assert first > now
        clock.set(first)
        job.run()
        assert job.next_run > first
