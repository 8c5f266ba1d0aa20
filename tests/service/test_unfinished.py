"""Interrupted batches are finished: at start and after a reload, in their period or late, and
before a due run starts the next batch; a batch that cannot finish does not hold back the next."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter
from pathlib import Path

import pytest

from mailbatch.batch.journal import Journal
from mailbatch.batch.runner import RunOptions, run
from mailbatch.errors import InterruptedRun
from mailbatch.job.model import load_job
from mailbatch.service.scheduler import Service
from tests.clock import FakeClock
from tests.scheduled import ServiceProcess, write_scheduled

PEOPLE = tuple(f"user{n:02d}" for n in range(1, 21))


def interrupt(path: Path, now: dt.datetime, after: int) -> None:
    """Run the job at ``now`` and stop it (as SIGTERM does) after ``after`` messages."""
    stop = threading.Event()

    def progress(done, total, address, outcome) -> None:
        if done >= after:
            stop.set()

    with pytest.raises(InterruptedRun):
        run(load_job(path), RunOptions(now=now, stop=stop, progress=progress))


def far_away() -> str:
    """A daily time of day that is not due during the test."""
    return (dt.datetime.now() + dt.timedelta(hours=12)).strftime("%H:%M")


def addresses(names) -> Counter:
    return Counter(f"{name}@example.org" for name in names)


def batches(path: Path) -> dict[str, int]:
    """Each batch of the job beside ``path`` (jobs/x.yaml) and how many it still has to send."""
    with Journal(path.parent / ".mailbatch" / f"{path.stem}.sqlite") as journal:
        return {info.batch: info.to_send for info in journal._batches("", ())}


# -- real processes and signals -------------------------------------------------------------------


def test_a_daily_batch_stopped_by_sigterm_is_resumed_when_the_service_starts_again(
        jobs, tmp_path, smtp_server_factory, ca_file, password_env):
    server = smtp_server_factory(slow_data_reply=(1, 0.1))
    status_file = tmp_path / "state" / "status.json"
    write_scheduled(jobs, "daily", server, ca_file, "every 1 second", recipients=PEOPLE)
    with ServiceProcess([jobs], status_file) as first:  # systemctl restart, or a reboot
        server.wait_for(3, timeout=20)
        assert first.stop() == 0
    before = len(server.messages)
    assert 3 <= before < len(PEOPLE)
    assert "daily: interrupted (exit 130)" in first.err()
    # Its timetable says tomorrow: only the service's look at start can finish it today.
    write_scheduled(jobs, "daily", server, ca_file, f"every day at {far_away()}",
                    recipients=PEOPLE)
    with ServiceProcess([jobs], status_file) as second:
        status = second.status(lambda s: s["jobs"][0]["last_run"]["result"] == "ok")
        assert second.stop() == 0
    assert server.received_count_by_rcpt() == addresses(PEOPLE)  # each once, all of them
    today = dt.date.today().isoformat()
    assert (f"daily: batch {today} was interrupted with {len(PEOPLE) - before} recipient(s) "
            "still to send; resuming it now") in second.err()
    assert f"batch {today} (resumed): {len(PEOPLE)} sent" in status["jobs"][0]["last_run"][
        "summary"]


def test_a_batch_from_a_period_that_is_over_is_finished_late_with_its_own_dates_at_start(
        jobs, tmp_path, smtp_server, ca_file, password_env):
    people = PEOPLE[:5]
    path = write_scheduled(jobs, "daily", smtp_server, ca_file, f"every day at {far_away()}",
                           recipients=people, text="Figures of {{ today }} for {{ name }}")
    yesterday = dt.datetime.now().astimezone() - dt.timedelta(days=1)
    interrupt(path, yesterday, after=2)
    assert len(smtp_server.messages) == 2
    with ServiceProcess([jobs], tmp_path / "state" / "status.json") as service:
        service.status(lambda s: s["jobs"][0]["last_run"] and
                       s["jobs"][0]["last_run"]["result"] == "ok")
        assert service.stop() == 0
    assert smtp_server.received_count_by_rcpt() == addresses(people)
    late = smtp_server.messages[2:]
    assert {m.message.get_content().split()[2] for m in late} == {yesterday.date().isoformat()}
    assert (f"daily: batch {yesterday.date()} was interrupted with 3 recipient(s) still to send "
            f"and its period is over (this period's batch is {dt.date.today()}); finishing it "
            "late now, with the dates it began with") in service.err()
    assert batches(path) == {yesterday.date().isoformat(): 0}  # and no new batch started


# -- on a clock the test moves ------------------------------------------------------------------


def local(*fields: int) -> dt.datetime:
    return dt.datetime(*fields).astimezone()


DAY = local(2026, 6, 3, 7, 0)  # a Wednesday


def test_a_due_run_finishes_an_older_unfinished_batch_late_then_runs_its_own(
        jobs, smtp_server, ca_file, password_env, caplog):
    path = write_scheduled(jobs, "daily", smtp_server, ca_file, "every day at 08:00",
                           recipients=PEOPLE[:3], text="Figures of {{ today }}")
    clock = FakeClock(DAY)
    service = Service([jobs], clock=clock)
    service.load()
    service.tick()  # the look at start: nothing unfinished yet
    interrupt(path, DAY - dt.timedelta(days=1), after=1)  # a cron run, killed
    smtp_server.reset()
    clock.set(local(2026, 6, 3, 8, 0))
    with caplog.at_level(logging.INFO, logger="mailbatch.service"):
        service.tick()
        service.wait_idle(20)
    bodies = Counter(m.message.get_content().strip() for m in smtp_server.messages)
    assert bodies == {"Figures of 2026-06-02": 2, "Figures of 2026-06-03": 3}
    assert batches(path) == {"2026-06-02": 0, "2026-06-03": 0}
    lines = [r.getMessage() for r in caplog.records]
    assert ("daily: batch 2026-06-02 still has 2 recipient(s) to send; finishing it late, "
            "before this period's batch, with the dates it began with") in lines
    assert [line.split(" after ")[0] for line in lines if " (exit " in line] == [
        "daily: ok (exit 0)", "daily: ok (exit 0)"]
    assert service.entries[path].last.result == "ok"


def test_a_batch_that_cannot_finish_does_not_hold_back_the_next_ones(
        jobs, smtp_server_factory, ca_file, password_env):
    server = smtp_server_factory()
    path = write_scheduled(jobs, "daily", server, ca_file, "every day at 08:00",
                           recipients=PEOPLE[:2], smtp={"retry": {"attempts": 1}})
    clock = FakeClock(DAY)
    service = Service([jobs], clock=clock)
    service.load()
    service.tick()
    interrupt(path, DAY - dt.timedelta(days=1), after=1)
    server.set_faults(tempfail_every=1)  # every message is refused for now (451): deferred
    clock.set(local(2026, 6, 3, 8, 0))
    service.tick()
    service.wait_idle(20)
    assert batches(path) == {"2026-06-02": 1, "2026-06-03": 2}  # both tried, neither finished
    last = service.entries[path].last
    assert (last.result, last.exit_code) == ("incomplete", 75)
    assert "batch 2026-06-02" in last.summary  # the first that did not end well

    server.set_faults(tempfail_every=None)
    server.reset()
    clock.set(local(2026, 6, 4, 8, 0))
    service.tick()
    service.wait_idle(20)
    assert batches(path) == {"2026-06-02": 0, "2026-06-03": 0, "2026-06-04": 0}
    assert Counter(m.rcpt_tos[0] for m in server.messages) == {
        "user01@example.org": 2, "user02@example.org": 3}  # 06-02 had user01 already


def test_a_reload_resumes_a_batch_interrupted_meanwhile_at_once(
        jobs, smtp_server, ca_file, password_env, caplog):
    path = write_scheduled(jobs, "weekly", smtp_server, ca_file, "every monday at 08:00",
                           recipients=PEOPLE[:4])
    clock = FakeClock(DAY)
    service = Service([jobs], clock=clock)
    service.load()
    service.tick()
    interrupt(path, DAY, after=1)  # e.g. a run by hand, stopped
    service.tick()
    service.wait_idle(10)
    assert len(smtp_server.messages) == 1  # a tick alone does not look again
    with caplog.at_level(logging.WARNING, logger="mailbatch.service"):
        service.request_reload()  # SIGHUP, systemctl reload
        service.tick()
        service.wait_idle(20)
    assert smtp_server.received_count_by_rcpt() == addresses(PEOPLE[:4])
    assert "weekly: batch 2026-06-03 was interrupted with 3 recipient(s) still to send; " \
        "resuming it now" in [r.getMessage() for r in caplog.records]
