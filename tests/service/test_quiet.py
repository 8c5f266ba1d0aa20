"""Quiet when failing: the owner gets one summary per change of a batch's outcome, not one per
run, across restarts too; and under systemd every log line carries its syslog priority."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from mailbatch.batch.journal import Journal
from mailbatch.batch.runner import run
from mailbatch.job.model import load_job
from mailbatch.service.scheduler import Service
from tests.clock import FakeClock
from tests.scheduled import OWNER, ServiceProcess, runs_seen, write_scheduled


def summaries(server, job: str | None = None) -> list[str]:
    return [m.message["Subject"] for m in server.messages if m.rcpt_tos == [OWNER]
            and (job is None or m.message["Subject"].startswith(f"[mailbatch] {job}"))]


def leave_uncertain(path: Path) -> None:
    """Run the job once, then mark its first recipient as a kill in the end of DATA leaves it."""
    report = run(load_job(path))
    with Journal(path.parent / ".mailbatch" / f"{path.stem}.sqlite") as journal:
        entry = next(journal.entries(report.batch))
        journal.db.execute("UPDATE deliveries SET status = 'uncertain' WHERE batch = ? AND "
                           "idx = ?", (report.batch, entry.index))


def three_jobs(jobs: Path, server, ca_file) -> None:
    notify = f"notify: {{to: {OWNER}, when: always}}\n"
    write_scheduled(jobs, "broken", server, ca_file, "every 1 second",
                    text="Hello {{ no_such_field }}", extra=f"notify: {OWNER}\n")
    write_scheduled(jobs, "always", server, ca_file, "every 1 second", extra=notify)
    leave_uncertain(write_scheduled(jobs, "uncertain", server, ca_file, "every 1 second",
                                    extra=f"notify: {OWNER}\n"))


def test_a_job_failing_at_every_tick_mails_its_owner_once_even_across_a_restart(
        jobs, tmp_path, smtp_server, ca_file, password_env):
    three_jobs(jobs, smtp_server, ca_file)
    status_file = tmp_path / "state" / "status.json"
    seen: dict[str, set[str]] = {}

    def each_ran(times: int):
        return lambda s: all(runs_seen(s, name, seen) >= times
                             for name in ("broken", "always", "uncertain"))

    with ServiceProcess([jobs], status_file) as first:
        first.status(each_ran(3))
        assert first.stop() == 0
    with ServiceProcess([jobs], status_file) as second:
        second.status(each_ran(5))
        assert second.stop() == 0
    assert len(summaries(smtp_server, "broken")) == 1
    assert summaries(smtp_server, "always") == [
        f"[mailbatch] always {dt.date.today()}: all 2 sent"]
    assert len(summaries(smtp_server, "uncertain")) == 1
    assert summaries(smtp_server, "uncertain")[0].endswith(": 1 of 2 not delivered")
    told = {j["name"]: j["notified"] for j in json.loads(status_file.read_text())["jobs"]}
    assert told["broken"] == {"": "exit 65: 2 message(s) could not be rendered; nothing was sent"}
    assert told["uncertain"] == {str(dt.date.today()): "exit 1: 1 uncertain, 1 sent"}
    for log in (first.err(), second.err()):
        assert log.count("notify summary sent") <= 3


def test_the_owner_is_told_again_when_the_outcome_changes_and_changes_back(
        jobs, smtp_server, ca_file, password_env):
    every_minute = 'batch: "minute-{{ now.minute }}"\n'  # a new batch at every run
    broken = {"text": "Hello {{ no_such_field }}", "extra": f"notify: {OWNER}\n{every_minute}"}
    fixed = {"extra": f"notify: {OWNER}\n{every_minute}"}
    write_scheduled(jobs, "report", smtp_server, ca_file, "every 1 minute", **broken)
    clock = FakeClock(dt.datetime(2026, 6, 3, 10, 0).astimezone())
    service = Service([jobs], clock=clock, poll=10)
    service.load()

    def two_minutes() -> None:
        for _ in range(2):
            clock.advance(minutes=1)
            service.tick()
            service.wait_idle(20)

    two_minutes()
    assert len(summaries(smtp_server)) == 1  # broken, twice: told once
    write_scheduled(jobs, "report", smtp_server, ca_file, "every 1 minute", **fixed)
    two_minutes()
    assert len(summaries(smtp_server)) == 1  # fixed: a good run needs no summary
    write_scheduled(jobs, "report", smtp_server, ca_file, "every 1 minute", **broken)
    two_minutes()
    assert len(summaries(smtp_server)) == 2  # broken again after good runs: told again
    assert len([m for m in smtp_server.messages if m.rcpt_tos != [OWNER]]) == 4


# -- logs under systemd -----------------------------------------------------------------------

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def test_under_systemd_every_log_line_carries_its_syslog_priority_and_no_timestamp(
        jobs, tmp_path, smtp_server, ca_file, password_env):
    write_scheduled(jobs, "broken", smtp_server, ca_file, "every 1 second",
                    text="Hello {{ no_such_field }}")
    write_scheduled(jobs, "fine", smtp_server, ca_file, "every 1 second")
    seen: dict[str, set[str]] = {}
    with ServiceProcess([jobs], tmp_path / "state" / "status.json", journal=True) as service:
        service.status(lambda s: runs_seen(s, "broken", seen) >= 1 and
                       runs_seen(s, "fine", seen) >= 1)
        assert service.stop() == 0
    lines = service.err().splitlines()
    assert lines and all(re.match(r"<[2-7]>", line) for line in lines), lines
    assert not any(TIMESTAMP.search(line) for line in lines)
    assert any(line.startswith("<3>ERROR broken: failed (exit 65) after ") for line in lines)
    assert any(line.startswith("<6>INFO fine: ok (exit 0) after ") for line in lines)
    assert any(line.startswith("<4>WARNING received SIGTERM") for line in lines)


def test_outside_systemd_log_lines_keep_their_timestamps(
        jobs, tmp_path, smtp_server, ca_file, password_env):
    write_scheduled(jobs, "fine", smtp_server, ca_file, "every 1 second")
    seen: dict[str, set[str]] = {}
    with ServiceProcess([jobs], tmp_path / "state" / "status.json") as service:
        service.status(lambda s: runs_seen(s, "fine", seen) >= 1)
        assert service.stop() == 0
    [line, *_] = [x for x in service.err().splitlines() if "fine: ok (exit 0)" in x]
    assert TIMESTAMP.match(line) and " INFO fine: ok " in line and not line.startswith("<")
