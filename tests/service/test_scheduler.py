"""The scheduler service, driven by a clock the tests move, against the real test SMTP server."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mailbatch.batch.lock import job_lock
from mailbatch.batch.runner import RunOptions, run
from mailbatch.batch.signals import reload_on_sighup
from mailbatch.cli import main as cli
from mailbatch.job.model import Job
from mailbatch.service.scheduler import Service
from tests.clock import FakeClock
from tests.scheduled import subjects, wait_for_status, write_scheduled


def local(*fields: int) -> dt.datetime:
    """A wall-clock time of this machine, aware (as the service's clock gives them)."""
    return dt.datetime(*fields).astimezone()


START = local(2026, 6, 3, 10, 0)  # a Wednesday
POLL = 10  # seconds between looks at the job files


def last_runs(service: Service) -> dict[str, dict | None]:
    return {job["name"]: job["last_run"] for job in service.status()["jobs"]}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def make_service(clock):
    """make(folder, **options) -> a loaded Service; its runs are waited for after the test."""
    services: list[Service] = []

    def make(*targets: Path, **options) -> Service:
        service = Service(list(targets), clock=clock, poll=POLL, **options)
        service.load()
        services.append(service)
        return service

    yield make
    for service in services:
        service.stop.set()
        service.wait_idle(timeout=10)


def step(service: Service, clock: FakeClock, **delta: float) -> None:
    """Move the clock, let the service act, and wait for the runs it started."""
    clock.advance(**delta)
    service.tick()
    service.wait_idle(timeout=10)


# -- due jobs run, on their own timetables ----------------------------------------------------


def test_due_jobs_run_when_the_clock_reaches_their_time_and_not_before(
        jobs, clock, make_service, smtp_server, ca_file, password_env):
    write_scheduled(jobs, "often", smtp_server, ca_file, "every 10 minutes")
    write_scheduled(jobs, "rarely", smtp_server, ca_file, "every 30 minutes")
    service = make_service(jobs)
    assert [e.next_run for e in service.sorted_entries()] == [
        local(2026, 6, 3, 10, 10), local(2026, 6, 3, 10, 30)]

    step(service, clock, minutes=9)
    assert smtp_server.messages == []
    step(service, clock, minutes=1)
    assert subjects(smtp_server) == ["often for Ann", "often for Bob"]
    assert last_runs(service)["rarely"] is None
    step(service, clock, minutes=20)
    assert subjects(smtp_server) == ["often for Ann", "often for Bob", "rarely for Ann",
                                     "rarely for Bob"]
    for last in last_runs(service).values():
        assert last is not None
        assert (last["result"], last["exit_code"]) == ("ok", 0)


def test_folder_files_without_a_schedule_are_not_jobs_of_the_service(
        jobs, make_service, smtp_server, ca_file):
    write_scheduled(jobs, "weekly", smtp_server, ca_file, "every monday at 08:00")
    (jobs / "unscheduled.yaml").write_text(
        (jobs / "weekly.yaml").read_text().replace("schedule: every monday at 08:00\n", ""))
    (jobs / "people.yaml").write_text("- {email: ann@example.org}\n")
    (jobs / "notes.txt").write_text("every day at 07:00\n")
    service = make_service(jobs)
    assert [e.name for e in service.sorted_entries()] == ["weekly"]


def test_a_failing_job_is_reported_and_never_stops_the_others(
        jobs, clock, make_service, smtp_server, ca_file, password_env, caplog):
    write_scheduled(jobs, "broken", smtp_server, ca_file, text="Hello {{ no_such_field }}")
    write_scheduled(jobs, "fine", smtp_server, ca_file)
    service = make_service(jobs)
    with caplog.at_level(logging.INFO, logger="mailbatch.service"):
        step(service, clock, minutes=10)
    assert subjects(smtp_server) == ["fine for Ann", "fine for Bob"]
    runs = last_runs(service)
    assert (runs["broken"]["result"], runs["broken"]["exit_code"]) == ("failed", 65)
    assert (runs["fine"]["result"], runs["fine"]["exit_code"]) == ("ok", 0)
    outcome = [r.getMessage() for r in caplog.records if r.getMessage().startswith("broken: ")]
    assert len(outcome) == 1
    assert outcome[0].startswith("broken: failed (exit 65) after ")
    assert "could not be rendered; nothing was sent" in outcome[0]

    step(service, clock, minutes=10)  # both stay scheduled and run again
    runs = last_runs(service)
    assert runs["broken"]["started"] == runs["fine"]["started"] == _iso(
        local(2026, 6, 3, 10, 20))


def test_a_run_that_crashes_with_a_bug_is_logged_with_its_traceback_and_the_service_goes_on(
        jobs, clock, make_service, smtp_server, ca_file, password_env, caplog):
    def runner(job: Job, options: RunOptions):
        if job.name == "buggy":
            raise ZeroDivisionError("division by zero")
        return run(job, options)

    write_scheduled(jobs, "buggy", smtp_server, ca_file)
    write_scheduled(jobs, "fine", smtp_server, ca_file)
    service = make_service(jobs, runner=runner)
    with caplog.at_level(logging.INFO, logger="mailbatch.service"):
        step(service, clock, minutes=10)
    crash = [r for r in caplog.records if r.exc_info]
    assert len(crash) == 1
    assert crash[0].levelno == logging.ERROR
    assert crash[0].exc_info[0] is ZeroDivisionError
    assert subjects(smtp_server) == ["fine for Ann", "fine for Bob"]
    runs = last_runs(service)
    assert (runs["buggy"]["result"], runs["buggy"]["exit_code"]) == ("crashed", 70)
    assert runs["buggy"]["summary"] == "ZeroDivisionError: division by zero"
    assert service.entries[jobs / "buggy.yaml"].next_run == local(2026, 6, 3, 10, 20)


# -- never twice at once --------------------------------------------------------------------


def test_a_job_still_running_when_it_is_due_again_is_not_started_twice(
        jobs, clock, make_service, smtp_server, ca_file, password_env, caplog):
    started, release = threading.Semaphore(0), threading.Event()
    calls = []

    def runner(job: Job, options: RunOptions):  # the real run, held at its start by the test
        calls.append(job.name)
        started.release()
        assert release.wait(10)
        return run(job, options)

    write_scheduled(jobs, "slow", smtp_server, ca_file, "every 1 minute")
    service = make_service(jobs, runner=runner)
    clock.advance(minutes=1)
    service.tick()
    assert started.acquire(timeout=10)
    with caplog.at_level(logging.WARNING, logger="mailbatch.service"):
        clock.advance(minutes=1)
        service.tick()
        clock.advance(minutes=1)
        service.tick()
    assert calls == ["slow"]
    assert [r.getMessage() for r in caplog.records] == [
        "slow: due again but still running since 2026-06-03T10:01:00"
        f"{_offset(START)}; not starting it twice"] * 2
    assert service.status()["jobs"][0]["running"] is True
    assert service.status()["jobs"][0]["overlaps_skipped"] == 2

    release.set()
    service.wait_idle(timeout=10)
    assert last_runs(service)["slow"]["result"] == "ok"
    step(service, clock, minutes=1)  # finished: the next due time starts it again
    assert calls == ["slow", "slow"]
    assert smtp_server.received_count_by_rcpt() == {"ann@example.org": 1, "bob@example.org": 1}


def test_a_run_held_off_by_another_process_lock_is_logged_and_skipped(
        jobs, clock, make_service, smtp_server, ca_file, password_env, caplog):
    write_scheduled(jobs, "daily", smtp_server, ca_file)
    service = make_service(jobs)
    job = service.entries[jobs / "daily.yaml"].job
    with job_lock(job.state_dir / "daily.lock", "daily"), \
            caplog.at_level(logging.WARNING, logger="mailbatch.service"):
        step(service, clock, minutes=10)
    last = last_runs(service)["daily"]
    assert (last["result"], last["exit_code"]) == ("skipped", 3)
    assert "daily is already running" in last["summary"]
    assert caplog.records[-1].getMessage().startswith("daily: skipped (exit 3) after ")
    assert smtp_server.messages == []


# -- reloading job files ----------------------------------------------------------------------


def test_a_job_file_added_to_the_folder_is_scheduled_at_the_next_look(
        jobs, clock, make_service, smtp_server, ca_file):
    service = make_service(jobs)
    assert service.entries == {}
    write_scheduled(jobs, "new", smtp_server, ca_file, "every 1 hour")
    clock.advance(seconds=POLL - 1)
    service.tick()
    assert service.entries == {}
    clock.advance(seconds=1)
    service.tick()
    assert service.entries[jobs / "new.yaml"].next_run == START + dt.timedelta(seconds=POLL,
                                                                               hours=1)


def test_a_changed_timetable_is_rescheduled_and_a_changed_body_is_used_by_the_next_run(
        jobs, clock, make_service, smtp_server, ca_file, password_env):
    path = write_scheduled(jobs, "report", smtp_server, ca_file, "every 10 minutes")
    service = make_service(jobs)
    write_scheduled(jobs, "report", smtp_server, ca_file, "every 30 minutes")
    service.request_reload()  # what SIGHUP does: no need to wait for the next look
    service.tick()
    assert service.entries[path].next_run == local(2026, 6, 3, 10, 30)

    write_scheduled(jobs, "report", smtp_server, ca_file, "every 30 minutes",
                    text="Version two for {{ name }}", extra="batch: two\n")
    step(service, clock, seconds=POLL)
    assert service.entries[path].next_run == local(2026, 6, 3, 10, 30)  # unchanged
    step(service, clock, minutes=30)
    assert {m.message.get_content().strip() for m in smtp_server.messages} == {
        "Version two for Ann", "Version two for Bob"}


def test_a_removed_job_file_is_no_longer_run(jobs, clock, make_service, smtp_server, ca_file):
    path = write_scheduled(jobs, "gone", smtp_server, ca_file)
    service = make_service(jobs)
    path.unlink()
    step(service, clock, minutes=10)
    step(service, clock, minutes=10)
    assert service.entries == {}
    assert service.scheduler.jobs == []
    assert smtp_server.messages == []


def test_a_job_file_that_became_invalid_is_reported_and_its_previous_version_keeps_running(
        jobs, clock, make_service, smtp_server, ca_file, password_env, caplog, tmp_path):
    status_file = tmp_path / "status.json"
    path = write_scheduled(jobs, "report", smtp_server, ca_file)
    service = make_service(jobs, status_file=status_file)
    write_scheduled(jobs, "report", smtp_server, ca_file, "every mondy at 08:00",
                    text="Broken version")
    with caplog.at_level(logging.ERROR, logger="mailbatch.service"):
        step(service, clock, seconds=POLL)
        step(service, clock, seconds=POLL)  # reported once, not at every look
    [error] = [r.getMessage() for r in caplog.records]
    assert error.startswith(f"{path}:")
    assert ": schedule: 'every mondy at 08:00' is not a timetable" in error
    assert error.endswith("; the previous version stays scheduled (next run "
                          f"2026-06-03T10:10:00{_offset(START)})")
    [job] = json.loads(status_file.read_text())["jobs"]
    assert job["file_error"].startswith(f"{path}:")
    assert job["schedule"] == "every 10 minutes"

    step(service, clock, minutes=10)
    assert subjects(smtp_server) == ["report for Ann", "report for Bob"]
    assert {m.message.get_content().strip() for m in smtp_server.messages} == {
        "Hello Ann", "Hello Bob"}

    write_scheduled(jobs, "report", smtp_server, ca_file, "every 10 minutes")
    step(service, clock, seconds=POLL)
    assert service.entries[path].error is None
    assert json.loads(status_file.read_text())["jobs"][0]["file_error"] is None


def test_a_job_file_invalid_from_the_start_is_listed_but_not_scheduled(
        jobs, make_service, smtp_server, ca_file):
    write_scheduled(jobs, "typo", smtp_server, ca_file, extra="subjet: oops\n")
    service = make_service(jobs)
    [entry] = service.sorted_entries()
    assert entry.job is None and entry.next_run is None
    assert "subjet" in entry.error


# -- stopping ---------------------------------------------------------------------------------


def test_stop_lets_the_message_in_flight_finish_commits_and_starts_no_new_runs(
        jobs, clock, make_service, smtp_server_factory, ca, ca_file, password_env, tmp_path):
    server = smtp_server_factory(slow_data_reply=(1, 0.5))  # every reply half a second late
    status_file = tmp_path / "status.json"
    write_scheduled(jobs, "long", server, ca_file, recipients=("ann", "bob", "cid"))
    service = make_service(jobs, status_file=status_file)
    clock.advance(minutes=10)
    serving = threading.Thread(target=service.serve)
    serving.start()
    server.wait_for(1, timeout=10)  # the first message is stored; its reply is on its way
    service.stop.set()  # what SIGTERM does (signals.stop_on_signals)
    serving.join(timeout=10)
    assert not serving.is_alive()
    clock.advance(minutes=10)
    service.tick()  # due again, but stopped: nothing starts
    service.wait_idle(timeout=10)

    assert len(server.messages) == 1
    status = json.loads(status_file.read_text())
    assert status["service"]["state"] == "stopped"
    last = status["jobs"][0]["last_run"]
    assert (last["result"], last["exit_code"]) == ("interrupted", 130)
    report = json.loads(Path(last["report"]).read_text())
    assert report["counts"]["sent"] == 1 and report["counts"]["pending"] == 2


# -- what it shows ----------------------------------------------------------------------------


def test_status_file_says_the_service_is_alive_and_each_jobs_last_and_next_run(
        jobs, clock, make_service, smtp_server, ca_file, password_env, tmp_path):
    status_file = tmp_path / "state" / "status.json"
    path = write_scheduled(jobs, "weekly", smtp_server, ca_file, "every wednesday at 10:05")
    service = make_service(jobs, status_file=status_file)
    status = json.loads(status_file.read_text())
    assert status["service"] == {
        "pid": os.getpid(), "state": "running", "started": _iso(START),
        "heartbeat": _iso(START), "poll_seconds": POLL, "watching": [str(jobs)]}
    assert status["jobs"] == [{
        "name": "weekly", "file": str(path), "schedule": "every wednesday at 10:05",
        "next_run": _iso(local(2026, 6, 3, 10, 5)), "running": False,
        "running_since": None, "overlaps_skipped": 0, "file_error": None, "last_run": None,
        "notified": {}}]

    step(service, clock, minutes=5)
    service.tick()  # the outcome is recorded at the tick after the run
    status = json.loads(status_file.read_text())
    assert status["service"]["heartbeat"] == _iso(local(2026, 6, 3, 10, 5))
    [job] = status["jobs"]
    assert job["next_run"] == _iso(local(2026, 6, 10, 10, 5))
    last = job["last_run"]
    assert last["started"] == last["finished"] == _iso(local(2026, 6, 3, 10, 5))
    assert (last["result"], last["exit_code"]) == ("ok", 0)
    assert last["summary"].startswith("weekly: batch ")
    assert "2 sent" in last["summary"]
    assert json.loads(Path(last["report"]).read_text())["counts"]["sent"] == 2
    assert [p.name for p in status_file.parent.iterdir()] == ["status.json"]  # no temp files

    clock.advance(seconds=POLL)
    service.tick()  # nothing happened: the heartbeat still moves
    assert json.loads(status_file.read_text())["service"]["heartbeat"] == _iso(clock())


def test_list_prints_each_job_with_its_next_run_and_exits(jobs, smtp_server, ca_file, capsys):
    write_scheduled(jobs, "weekly-sales", smtp_server, ca_file, "every monday at 08:00")
    write_scheduled(jobs, "hourly", smtp_server, ca_file, "every 1 hour")
    assert cli.main(["schedule", "--list", str(jobs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["hourly", "weekly-sales"]
    weekly = lines[1].split()
    assert weekly[1] == "Mon" and weekly[3] == "08:00:00"
    assert " every monday at 08:00 " in lines[1]
    assert lines[1].endswith(f"({jobs / 'weekly-sales.yaml'})")


def test_list_shows_an_invalid_job_file_and_exits_with_the_config_code(
        jobs, smtp_server, ca_file, capsys):
    write_scheduled(jobs, "fine", smtp_server, ca_file)
    write_scheduled(jobs, "typo", smtp_server, ca_file, "every fortnight")
    assert cli.main(["schedule", "--list", str(jobs)]) == 78
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["typo", "not", "scheduled"]
    assert lines[2].strip().startswith(f"INVALID: {jobs / 'typo.yaml'}:")
    assert "'every fortnight' is not a timetable" in lines[2]


def test_sighup_asks_the_service_to_reload_at_once():
    asked = threading.Event()
    before = signal.getsignal(signal.SIGHUP)
    with reload_on_sighup(asked.set):
        os.kill(os.getpid(), signal.SIGHUP)
        assert asked.wait(5)
    assert signal.getsignal(signal.SIGHUP) == before


def test_schedule_of_a_folder_that_does_not_exist_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["schedule", "--list", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == (f"mailbatch: error: {tmp_path / 'nope'}: no such file "
                                       "or folder; give a folder of job files, or job files\n")


# -- end to end -------------------------------------------------------------------------------


def test_the_service_runs_two_jobs_every_second_until_sigterm(
        jobs, smtp_server, ca_file, password_env, tmp_path):
    status_file = tmp_path / "status.json"
    write_scheduled(jobs, "first", smtp_server, ca_file, "every 1 second")
    write_scheduled(jobs, "second", smtp_server, ca_file, "every 1 second",
                    recipients=("cid", "dee"))
    service = subprocess.Popen(
        [sys.executable, "-m", "mailbatch", "schedule", str(jobs), "--status-file",
         str(status_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        smtp_server.wait_for(4, timeout=15)
        status = wait_for_status(status_file, lambda s: all(
            job["last_run"] and job["last_run"]["result"] == "ok" for job in s["jobs"])
            and len(s["jobs"]) == 2)
        assert status["service"]["pid"] == service.pid
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=15)
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
    assert service.returncode == 0, err
    assert [line.split()[0] for line in out.splitlines()] == ["first", "second"]
    assert "every 1 second" in out
    # Every second is a run, but a finished batch is never sent again.
    assert smtp_server.received_count_by_rcpt() == {
        "ann@example.org": 1, "bob@example.org": 1, "cid@example.org": 1, "dee@example.org": 1}
    assert "first: ok (exit 0) after " in err and "second: ok (exit 0) after " in err
    assert "Traceback" not in err
    final = json.loads(status_file.read_text())
    assert final["service"]["state"] == "stopped"
    for job in final["jobs"]:
        assert (job["last_run"]["result"], job["last_run"]["exit_code"]) == ("ok", 0)
        assert job["next_run"] is not None and job["running"] is False


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone().isoformat(timespec="seconds")


def _offset(moment: dt.datetime) -> str:
    return _iso(moment)[19:]
