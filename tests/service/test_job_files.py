"""No job file can stop the service: whatever loading one raises is that file's error, logged once
per change and shown in --list and the status file, and the other jobs keep running."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from mailbatch.job.model import load_job
from mailbatch.service import watch
from mailbatch.service.scheduler import Service
from mailbatch.service.timing import TimetableScheduler
from tests.clock import FakeClock
from tests.scheduled import ServiceProcess, runs_seen, subjects, write_scheduled

START = dt.datetime(2026, 6, 3, 10, 0, tzinfo=dt.UTC)
UTC = dt.UTC

# Job files a sysadmin might drop into the folder, each broken in its own way.
BAD_FILES = {
    "no-smtp": "from: a@example.org\nsubject: Hi\ntext: Hello\nrecipients: [{email: "
               "b@example.org}]\nschedule: every 1 hour\n",
    "weeks": None,  # a good job, but schedule: every 100000000 weeks
    "days": None,  # every 99999999999 days
    "syntax": "schedule: every day at 07:00\nsmtp: {host: [unclosed\n",
    "binary": b"schedule: every day\n\xff\xfe\x00\x01",
    "empty-schedule": None,  # schedule: ''
}


def drop_bad_files(folder: Path, server, ca_file) -> list[Path]:
    """Write them elsewhere, then move them in: the service never sees half a file."""
    incoming = folder.parent / "incoming"
    incoming.mkdir()
    for name, content in BAD_FILES.items():
        path = incoming / f"{name}.yaml"
        if name == "weeks":
            write_scheduled(incoming, name, server, ca_file, "every 100000000 weeks")
        elif name == "days":
            write_scheduled(incoming, name, server, ca_file, "every 99999999999 days")
        elif name == "empty-schedule":
            write_scheduled(incoming, name, server, ca_file, "''")
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return [path.rename(folder / path.name) for path in sorted(incoming.iterdir())]


def test_bad_job_files_dropped_into_the_folder_never_stop_the_service_or_the_other_jobs(
        jobs, tmp_path, smtp_server, ca_file, password_env):
    status_file = tmp_path / "state" / "status.json"
    write_scheduled(jobs, "steady", smtp_server, ca_file, "every 1 second")
    seen: dict[str, set[str]] = {}
    with ServiceProcess([jobs], status_file) as service:
        service.status(lambda s: runs_seen(s, "steady", seen) >= 1)
        bad = drop_bad_files(jobs, smtp_server, ca_file)
        service.signal(signal.SIGHUP)
        status = service.status(lambda s: len(s["jobs"]) == 1 + len(bad) and all(
            j["file_error"] for j in s["jobs"] if j["name"] != "steady"))
        before = runs_seen(status, "steady", seen)
        service.status(lambda s: runs_seen(s, "steady", seen) >= before + 2)  # still running
        service.signal(signal.SIGHUP)  # nothing changed: nothing logged again
        service.status(lambda s: runs_seen(s, "steady", seen) >= before + 3)
        listed = subprocess.run([sys.executable, "-m", "mailbatch", "schedule", "--list",
                                 str(jobs)], capture_output=True, text=True, timeout=60)
        assert service.stop() == 0
    log = service.err()
    for path in bad:
        assert sum(str(path) in line for line in log.splitlines()
                   if " ERROR " in line) == 1, (path, log)
    errors = {j["name"]: j["file_error"] for j in json.loads(status_file.read_text())["jobs"]}
    assert "every 100000000 weeks is too long" in errors["weeks"]
    assert "the interval 99999999999 is too long" in errors["days"]
    assert errors["steady"] is None
    assert listed.returncode == 78, listed.stderr
    assert listed.stdout.count("INVALID: ") == len(bad)
    assert smtp_server.received_count_by_rcpt() == {"ann@example.org": 1, "bob@example.org": 1}


def test_whatever_the_loader_raises_is_that_files_error_and_the_others_run(
        jobs, smtp_server, ca_file, password_env, monkeypatch, caplog):
    faults = {"recursion": RecursionError("maximum recursion depth exceeded"),
              "memory": MemoryError(), "bug": ZeroDivisionError("division by zero"),
              "key": KeyError("smtp")}
    for name in (*faults, "fine"):
        write_scheduled(jobs, name, smtp_server, ca_file)

    def loader(path):
        if Path(path).stem in faults:
            raise faults[Path(path).stem]
        return load_job(path)

    monkeypatch.setattr(watch, "load_job", loader)
    clock = FakeClock(START)
    service = Service([jobs], clock=clock, zone=UTC)
    with caplog.at_level(logging.ERROR, logger="mailbatch.service"):
        service.load()
    for name, fault in faults.items():
        entry = service.entries[jobs / f"{name}.yaml"]
        assert entry.next_run is None
        assert entry.error.startswith(f"{entry.path}: cannot be loaded: {type(fault).__name__}")
        assert "this is a bug in mailbatch" in entry.error
    crashes = [r for r in caplog.records if r.exc_info]
    assert sorted(r.exc_info[0].__name__ for r in crashes) == sorted(
        type(f).__name__ for f in faults.values())
    clock.advance(minutes=10)
    service.tick()
    service.wait_idle(10)
    assert subjects(smtp_server) == ["fine for Ann", "fine for Bob"]


def test_a_valid_job_whose_reload_raises_keeps_its_previous_version_scheduled(
        jobs, smtp_server, ca_file, password_env, monkeypatch):
    path = write_scheduled(jobs, "report", smtp_server, ca_file)
    clock = FakeClock(START)
    service = Service([jobs], clock=clock, zone=UTC)
    service.load()
    monkeypatch.setattr(watch, "load_job", lambda path: 1 / 0)
    write_scheduled(jobs, "report", smtp_server, ca_file, text="Changed")
    service.request_reload()
    service.tick()
    entry = service.entries[path]
    assert "ZeroDivisionError" in entry.error
    assert entry.next_run == START + dt.timedelta(minutes=10)
    clock.advance(minutes=10)
    service.tick()
    service.wait_idle(10)
    assert {m.message.get_content().strip() for m in smtp_server.messages} == {
        "Hello Ann", "Hello Bob"}


def test_a_timetable_the_scheduler_cannot_take_is_that_files_error(
        jobs, smtp_server, ca_file, password_env, monkeypatch, caplog):
    write_scheduled(jobs, "odd", smtp_server, ca_file, "every 2 hours")
    write_scheduled(jobs, "fine", smtp_server, ca_file)
    add = TimetableScheduler.add

    def failing(self, timetable, func, tag=None):
        if timetable.text == "every 2 hours":
            raise OverflowError("date value out of range")
        return add(self, timetable, func, tag)

    monkeypatch.setattr(TimetableScheduler, "add", failing)
    service = Service([jobs], clock=FakeClock(START), zone=UTC)
    with caplog.at_level(logging.ERROR, logger="mailbatch.service"):
        service.load()
    odd = service.entries[jobs / "odd.yaml"]
    assert "OverflowError: date value out of range" in odd.error and odd.next_run is None
    assert service.entries[jobs / "fine.yaml"].next_run is not None
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [OverflowError]


def test_a_file_changed_again_is_reported_again_once(jobs, smtp_server, ca_file, caplog):
    path = write_scheduled(jobs, "typo", smtp_server, ca_file, "every fortnight")
    clock = FakeClock(START)
    service = Service([jobs], clock=clock, poll=10, zone=UTC)
    with caplog.at_level(logging.ERROR, logger="mailbatch.service"):
        service.load()
        for _ in range(3):
            clock.advance(seconds=10)
            service.tick()
        old = path.stat().st_mtime
        os.utime(path, (old + 5, old + 5))
        for _ in range(3):
            clock.advance(seconds=10)
            service.tick()
    assert len([r for r in caplog.records if str(path) in r.getMessage()]) == 2
