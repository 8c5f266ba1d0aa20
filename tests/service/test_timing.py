"""When runs fall due, on a clock the test moves: wall-clock times across both daylight-saving
changes of the year, east and west of UTC; intervals in elapsed time; first runs; no drift."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbatch.job.timetable import parse_timetable
from mailbatch.service.timing import TimetableScheduler
from tests.clock import FakeClock

UTC = dt.UTC
MACHINE = ZoneInfo("UTC")  # the zone of timetables without one, unless a test says otherwise
WEDNESDAY = dt.datetime(2026, 6, 3, 10, 0, tzinfo=MACHINE)


def at(*fields: int, zone: dt.tzinfo = MACHINE, fold: int = 0) -> dt.datetime:
    return dt.datetime(*fields, tzinfo=zone, fold=fold)


def next_runs(text: str, now: dt.datetime, machine: dt.tzinfo = MACHINE) -> list[dt.datetime]:
    scheduler = TimetableScheduler(FakeClock(now), machine)
    return sorted(job.next_run for job in scheduler.add(parse_timetable(text), lambda: None))


def runs_between(text: str, start: dt.datetime, end: dt.datetime, *,
                 step: dt.timedelta = dt.timedelta(minutes=1),
                 machine: dt.tzinfo = MACHINE) -> list[dt.datetime]:
    """Tick the scheduler every ``step`` from ``start`` to ``end``; the moments it ran the job.
    Every next run it computes must be later than its clock."""
    clock = FakeClock(start)
    scheduler = TimetableScheduler(clock, machine)
    ran: list[dt.datetime] = []
    jobs = scheduler.add(parse_timetable(text), lambda: ran.append(clock()))
    while clock() < end:
        clock.set(clock() + step)
        scheduler.run_pending()
        for job in jobs:
            assert job.next_run > clock(), (job.next_run, clock())
    return ran


# -- the basics ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("every 15 minutes", at(2026, 6, 3, 10, 15)),
    ("every 2 hours", at(2026, 6, 3, 12, 0)),
    ("every day at 07:30", at(2026, 6, 4, 7, 30)),
    ("every day at 11:00", at(2026, 6, 3, 11, 0)),
    ("every 2 days at 11:00", at(2026, 6, 3, 11, 0)),  # the next 11:00 first, see below
    ("every monday at 08:00", at(2026, 6, 8, 8, 0)),
    ("every wednesday at 09:00", at(2026, 6, 10, 9, 0)),
    ("every wednesday at 11:00", at(2026, 6, 3, 11, 0)),
    ("every hour at :15", at(2026, 6, 3, 10, 15)),
    ("every minute at :30", at(2026, 6, 3, 10, 0, 30)),
    ("every monday at 08:00 Europe/Paris", at(2026, 6, 8, 8, 0, zone=ZoneInfo("Europe/Paris"))),
])
def test_next_run_follows_the_clock_not_the_real_time(text, expected):
    assert next_runs(text, WEDNESDAY)[0] == expected


def test_next_run_is_an_aware_moment_in_utc():
    [run] = next_runs("every day at 07:30 America/New_York", WEDNESDAY)
    assert run.tzinfo is UTC and run == at(2026, 6, 3, 11, 30)


def test_each_named_day_gets_its_own_run():
    runs = next_runs("every monday and thursday at 08:00", WEDNESDAY)
    assert runs == [at(2026, 6, 4, 8, 0), at(2026, 6, 8, 8, 0)]


def test_a_time_without_a_zone_is_the_machines_wall_clock_time():
    tokyo = ZoneInfo("Asia/Tokyo")
    assert next_runs("every day at 07:30", WEDNESDAY, machine=tokyo) == [
        at(2026, 6, 4, 7, 30, zone=tokyo)]


def test_due_job_runs_only_once_the_clock_reaches_it_and_is_then_rescheduled():
    clock = FakeClock(WEDNESDAY)
    scheduler = TimetableScheduler(clock, MACHINE)
    ran = []
    scheduler.add(parse_timetable("every 15 minutes"), lambda: ran.append(clock()))
    assert scheduler.idle_seconds == 15 * 60
    clock.advance(minutes=14, seconds=59)
    scheduler.run_pending()
    assert ran == []
    clock.advance(seconds=1)
    scheduler.run_pending()
    assert ran == [at(2026, 6, 3, 10, 15)]
    assert scheduler.next_run == at(2026, 6, 3, 10, 30)
    clock.advance(hours=3)  # missed runs are not caught up: one run, then the next slot
    scheduler.run_pending()
    assert len(ran) == 2
    assert scheduler.next_run == at(2026, 6, 3, 13, 30)


# -- the smaller points: first runs, drift --------------------------------------------------------


def test_every_2_days_at_six_checked_at_five_first_runs_the_same_day_then_every_second_day():
    start = at(2026, 6, 3, 5, 0)
    runs = runs_between("every 2 days at 06:00", start, start + dt.timedelta(days=6),
                        step=dt.timedelta(minutes=30))
    assert runs == [at(2026, 6, 3, 6, 0), at(2026, 6, 5, 6, 0), at(2026, 6, 7, 6, 0)]


def test_every_3_hours_at_a_quarter_past_first_runs_at_the_next_quarter_past():
    start = at(2026, 6, 3, 10, 20)
    runs = runs_between("every 3 hours at :15", start, start + dt.timedelta(hours=8))
    assert runs == [at(2026, 6, 3, 11, 15), at(2026, 6, 3, 14, 15), at(2026, 6, 3, 17, 15)]


def test_an_interval_job_keeps_its_rhythm_when_every_tick_comes_late():
    clock = FakeClock(WEDNESDAY)
    scheduler = TimetableScheduler(clock, MACHINE)
    [job] = scheduler.add(parse_timetable("every 10 minutes"), lambda: None)
    for n in range(1, 101):
        clock.set(job.next_run + dt.timedelta(milliseconds=23))  # the loop woke up late
        scheduler.run_pending()
        assert job.next_run == WEDNESDAY + dt.timedelta(minutes=10 * (n + 1))


def test_a_clock_that_jumps_years_ahead_costs_one_step_not_one_per_missed_run():
    clock = FakeClock(WEDNESDAY)
    scheduler = TimetableScheduler(clock, MACHINE)
    [job] = scheduler.add(parse_timetable("every 1 second"), lambda: None)
    clock.advance(days=300)
    scheduler.run_pending()
    assert job.next_run == WEDNESDAY + dt.timedelta(days=300, seconds=1)


# -- daylight-saving changes, east and west of UTC, both of the year ------------------------------

# zone, the spring change (the hour 02:00-03:00 local does not exist), the autumn change
# (an hour occurs twice: 02:00-03:00 in Europe and Sydney, 01:00-02:00 in New York)
CHANGES = {
    "Europe/Berlin": (dt.date(2026, 3, 29), dt.date(2026, 10, 25), 2),
    "America/New_York": (dt.date(2026, 3, 8), dt.date(2026, 11, 1), 1),
    "Australia/Sydney": (dt.date(2026, 10, 4), dt.date(2026, 4, 5), 2),
}
ZONES = list(CHANGES)


def local_runs(text: str, zone: ZoneInfo, day: dt.date, *, start_hour: float = -36,
               machine: dt.tzinfo = MACHINE) -> list[str]:
    """The runs from ``start_hour`` hours around ``day``'s midnight to two days after it, as
    local times with their UTC offset."""
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(UTC)
    start = midnight + dt.timedelta(hours=start_hour)
    runs = runs_between(text, start, midnight + dt.timedelta(days=2), machine=machine)
    return [run.astimezone(zone).isoformat(timespec="minutes") for run in runs]


@pytest.mark.parametrize("name", ZONES)
def test_a_time_that_does_not_exist_on_the_spring_change_runs_an_hour_later(name):
    zone = ZoneInfo(name)
    spring, _, _ = CHANGES[name]
    runs = local_runs(f"every day at 02:30 {name}", zone, spring)
    before, after = spring - dt.timedelta(days=1), spring + dt.timedelta(days=1)
    assert [r[:16] for r in runs] == [f"{before}T02:30", f"{spring}T03:30", f"{after}T02:30"]


@pytest.mark.parametrize("name", ZONES)
def test_a_time_that_occurs_twice_on_the_autumn_change_runs_once_at_its_first(name):
    zone = ZoneInfo(name)
    _, autumn, hour = CHANGES[name]
    runs = local_runs(f"every day at {hour:02d}:30 {name}", zone, autumn)
    first = dt.datetime.combine(autumn, dt.time(hour, 30), tzinfo=zone)  # fold 0: the first
    assert len(runs) == 3
    assert runs[1] == first.isoformat(timespec="minutes")
    assert runs[1][16:] != runs[2][16:]  # the offset changed in between


@pytest.mark.parametrize("name", ZONES)
def test_started_between_the_two_occurrences_the_next_run_is_the_next_day(name):
    zone = ZoneInfo(name)
    _, autumn, hour = CHANGES[name]
    second = dt.datetime.combine(autumn, dt.time(hour, 15, fold=1), tzinfo=zone)  # after 1st
    midnight = dt.datetime.combine(autumn, dt.time(), tzinfo=zone)
    start_hour = (second.astimezone(UTC) - midnight.astimezone(UTC)).total_seconds() / 3600
    runs = local_runs(f"every day at {hour:02d}:30 {name}", zone, autumn, start_hour=start_hour)
    nextday = autumn + dt.timedelta(days=1)
    assert [r[:16] for r in runs] == [f"{nextday}T{hour:02d}:30"]


def test_the_issue_case_a_utc_machine_at_0115_utc_on_the_berlin_autumn_change():
    """Computed during the repeated hour, 02:30 Berlin used to be the first 02:30, already
    past: it fired at every tick until 02:30 CET."""
    now = at(2026, 10, 25, 1, 15, zone=UTC)
    assert next_runs("every day at 02:30 Europe/Berlin", now) == [at(2026, 10, 26, 1, 30,
                                                                      zone=UTC)]
    runs = runs_between("every day at 02:30 Europe/Berlin", now, now + dt.timedelta(hours=2),
                        step=dt.timedelta(milliseconds=500))
    assert runs == []


@pytest.mark.parametrize("name", ZONES)
@pytest.mark.parametrize("which", [0, 1])
def test_a_machine_zone_follows_its_changes_too(name, which):
    zone = ZoneInfo(name)
    day = CHANGES[name][which]
    hour = 2 if which == 0 else CHANGES[name][2]
    runs = local_runs(f"every day at {hour:02d}:30", zone, day, machine=zone)
    assert len(runs) == 3 and len({r[:10] for r in runs}) == 3  # one run a day


@pytest.mark.parametrize("name", ZONES)
def test_an_interval_counts_elapsed_time_across_the_autumn_change(name):
    zone = ZoneInfo(name)
    _, autumn, _ = CHANGES[name]
    midnight = dt.datetime.combine(autumn, dt.time(), tzinfo=zone).astimezone(UTC)
    start = midnight - dt.timedelta(minutes=30)
    end = dt.datetime.combine(autumn + dt.timedelta(days=1), dt.time(),
                              tzinfo=zone).astimezone(UTC) - dt.timedelta(minutes=30)
    for text, per_day in (("every 1 hour", 25), ("every hour at :15", 25)):
        runs = runs_between(text, start, end, machine=zone)
        assert len(runs) == per_day, text  # the long day has 25 hours, each with its run
        gaps = {b - a for a, b in itertools.pairwise(runs)}
        assert gaps == {dt.timedelta(hours=1)}, text


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(ZONES), which=st.sampled_from([0, 1]),
       hours=st.floats(-30, 30, allow_nan=False), at_minute=st.integers(0, 5 * 60 - 1),
       machine_is_zone=st.booleans())
def test_near_a_change_every_next_run_is_in_the_future_and_each_day_runs_once(
        name, which, hours, at_minute, machine_is_zone):
    zone = ZoneInfo(name)
    day = CHANGES[name][which]
    when = f"{at_minute // 60:02d}:{at_minute % 60:02d}"
    text = f"every day at {when}" + ("" if machine_is_zone else f" {name}")
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(UTC)
    start = midnight + dt.timedelta(hours=hours)
    runs = runs_between(text, start, start + dt.timedelta(days=2), step=dt.timedelta(minutes=7),
                        machine=zone if machine_is_zone else MACHINE)
    days = [run.astimezone(zone).date() for run in runs]
    assert len(days) == len(set(days)) and len(runs) in (1, 2, 3)
