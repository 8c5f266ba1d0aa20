"""The service and time: the autumn change on a UTC machine, the zone in --list, a loop that
sleeps until its next event and wakes at once for a reload or a stop."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time

import pytest

from mailbatch.cli import main as cli
from mailbatch.service.scheduler import Service
from tests.clock import FakeClock
from tests.scheduled import write_scheduled

UTC = dt.UTC


def tick_through(service: Service, clock: FakeClock, hours: float, step_seconds: float) -> None:
    end = clock() + dt.timedelta(hours=hours)
    while clock() < end:
        clock.advance(seconds=step_seconds)
        service.tick()
        service.wait_idle(10)


@pytest.mark.parametrize("how", ["start", "edit"])
def test_on_a_utc_machine_the_berlin_autumn_change_neither_refires_nor_runs_in_the_past(
        how, jobs, smtp_server, ca_file, password_env, caplog):
    """The case of the issue: started (or edited) at 01:15 UTC on 2026-10-25, during the hour
    Berlin has twice, 'every day at 02:30 Europe/Berlin' ran twice and warned ~22 times."""
    at_0115 = dt.datetime(2026, 10, 25, 1, 15, tzinfo=UTC)
    clock = FakeClock(at_0115 if how == "start" else at_0115 - dt.timedelta(hours=13))
    first = "every day at 02:30 Europe/Berlin" if how == "start" else "every day at 18:00 UTC"
    path = write_scheduled(jobs, "nightly", smtp_server, ca_file, first)
    service = Service([jobs], clock=clock, zone=UTC, poll=10)
    service.load()
    if how == "edit":
        clock.set(at_0115)
        write_scheduled(jobs, "nightly", smtp_server, ca_file, "every day at 02:30 Europe/Berlin")
        service.request_reload()
        service.tick()
    assert service.entries[path].next_run == dt.datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
    with caplog.at_level(logging.WARNING, logger="mailbatch.service"):
        tick_through(service, clock, hours=2, step_seconds=1)
    assert smtp_server.messages == []
    assert caplog.records == []
    assert service.entries[path].overlaps == 0
    assert service.entries[path].next_run == dt.datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


def test_list_shows_the_next_run_in_the_jobs_own_zone_too(jobs, smtp_server, ca_file, capsys):
    write_scheduled(jobs, "paris", smtp_server, ca_file, "every monday at 08:00 Europe/Paris")
    write_scheduled(jobs, "local", smtp_server, ca_file, "every monday at 08:00")
    assert cli.main(["schedule", "--list", str(jobs)]) == 0
    local, paris = capsys.readouterr().out.splitlines()
    assert re.search(r" \(Mon 08:00:00 CES?T Europe/Paris\)  every monday at 08:00 Europe/Paris ",
                     paris), paris
    assert "(" not in local.split("  every")[0]  # the machine's zone is shown once


def test_a_reload_request_wakes_the_sleeping_loop_at_once(jobs, smtp_server, ca_file):
    clock = FakeClock(dt.datetime(2026, 6, 3, 10, 0, tzinfo=UTC))  # frozen: nothing falls due
    service = Service([jobs], clock=clock, poll=3600, zone=UTC)
    service.load()
    serving = threading.Thread(target=service.serve)
    serving.start()
    try:
        time.sleep(0.2)  # the loop is asleep now, for up to an hour of its clock
        write_scheduled(jobs, "new", smtp_server, ca_file, "every 1 hour")
        service.request_reload()  # what SIGHUP does
        deadline = time.monotonic() + 30
        while not service.entries and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [e.name for e in service.entries.values()] == ["new"]
    finally:
        service.stop.set()  # wakes it too
        serving.join(30)
    assert not serving.is_alive()
    assert service.state == "stopped"


def test_a_bug_in_the_loop_itself_is_logged_once_and_the_service_goes_on(
        jobs, smtp_server, ca_file, caplog):
    clock = FakeClock(dt.datetime(2026, 6, 3, 10, 0, tzinfo=UTC))
    service = Service([jobs], clock=clock, poll=3600, zone=UTC)
    service.load()
    failures = []

    def broken() -> None:
        failures.append(1)
        if len(failures) >= 3:
            service.stop.set()
        raise RuntimeError("a bug")

    service.scheduler.run_pending = broken
    with caplog.at_level(logging.ERROR, logger="mailbatch.service"):
        service.serve()  # returns only because the third tick stopped it
    assert len(failures) == 3
    assert [r.getMessage() for r in caplog.records] == ["the service's loop failed; trying again"]
    assert service.state == "stopped"
