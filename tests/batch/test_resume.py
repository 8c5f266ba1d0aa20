"""Batches and resumes: a re-run sends only what the server has not accepted, a new batch all."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mailbatch.batch.journal import Journal
from mailbatch.batch.runner import RunOptions, prepare, run
from mailbatch.errors import (
    EXIT_CONFIG,
    EXIT_DATA,
    EXIT_NOPERM,
    EXIT_OK,
    EXIT_TEMPFAIL,
    EXIT_UNFINISHED,
    EXIT_USAGE,
    StateError,
)
from mailbatch.job.model import load_job
from mailbatch.message.render import Renderer
from tests.batchjobs import BATCH, NOW, addresses, batch_job, run_batch
from tests.smtpserver import PASSWORD


def test_rerun_of_a_completed_batch_sends_nothing_and_reports_the_whole_batch(
        smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, 4)
    assert run_batch(job).code == EXIT_OK
    smtp_server.reset()

    again = run_batch(job)

    assert again.code == EXIT_OK
    assert smtp_server.messages == []
    assert smtp_server.connections == 0  # a finished batch does not even log in
    assert again.report["resumed"] is True
    assert again.report["batch"] == BATCH
    assert again.statuses == dict.fromkeys(addresses(4), "sent")


def test_new_batch_option_sends_everyone_again_with_new_message_ids(
        smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, 3)
    run_batch(job)

    fresh = run_batch(job, new_batch=True)

    assert fresh.code == EXIT_OK
    assert fresh.report["batch"] == f"{BATCH}#2"
    assert fresh.report["resumed"] is False
    assert smtp_server.received_count_by_rcpt() == Counter({a: 2 for a in addresses(3)})
    ids = [m.message["Message-ID"] for m in smtp_server.messages]
    assert len(set(ids)) == 6  # a mail store that drops repeated IDs keeps both batches
    assert (tmp_path / "reports" / f"job-{BATCH}_2.json").is_file()
    assert run_batch(job).report["batch"] == f"{BATCH}#2"  # the newest batch is resumed


def test_a_new_batch_identity_starts_fresh(smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, 3)
    run_batch(job)

    next_day = run_batch(job, now=NOW + dt.timedelta(days=1))

    assert next_day.code == EXIT_OK
    assert next_day.report["batch"] == "2026-03-03"
    assert next_day.report["resumed"] is False
    assert smtp_server.received_count_by_rcpt() == Counter({a: 2 for a in addresses(3)})


def test_batch_key_in_the_job_file_sets_the_identity(smtp_server, ca_file, tmp_path,
                                                     password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, 2, extra='batch: "{{ iso_week }}"\n')
    run_batch(job)

    later_that_week = run_batch(job, now=NOW + dt.timedelta(days=3))

    assert later_that_week.report["batch"] == "2026-W10"
    assert later_that_week.report["resumed"] is True
    assert len(smtp_server.messages) == 2


def test_login_refused_mid_run_stops_with_the_rest_pending_and_the_resume_completes(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(fail_login_after=1)
    job = batch_job(tmp_path, server, ca_file, 5, max_messages_per_connection=2)

    first = run_batch(job)

    assert first.code == EXIT_NOPERM
    assert first.error.startswith("login refused by 127.0.0.1 for mailer: 535")
    assert first.counts == Counter(sent=2, pending=3)
    assert len(server.messages) == 2

    server.set_faults(fail_login_after=None)
    second = run_batch(job)

    assert second.code == EXIT_OK
    assert second.report["resumed"] is True
    assert server.received_count_by_rcpt() == Counter(addresses(5))
    assert second.statuses == dict.fromkeys(addresses(5), "sent")


def test_recipients_removed_between_runs_are_not_sent_and_the_batch_can_finish(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(fail_login_after=1)
    job = batch_job(tmp_path, server, ca_file, 5, max_messages_per_connection=2)
    assert run_batch(job).code == EXIT_NOPERM  # user1 and user2 sent, the rest pending
    server.set_faults(fail_login_after=None)
    fewer = [a for a in addresses(5) if a not in ("user1@example.org", "user4@example.org")]
    batch_job(tmp_path, server, ca_file, fewer)

    resumed = run_batch(job)

    assert resumed.code == EXIT_OK
    assert server.received_count_by_rcpt() == Counter(
        ["user1@example.org", "user2@example.org", "user3@example.org", "user5@example.org"])
    assert resumed.statuses == {"user1@example.org": "sent", "user2@example.org": "sent",
                                "user3@example.org": "sent", "user4@example.org": "removed",
                                "user5@example.org": "sent"}

    batch_job(tmp_path, server, ca_file, 5)  # user4 listed again in the same batch
    relisted = run_batch(job)

    assert relisted.code == EXIT_OK
    assert server.received_count_by_rcpt() == Counter(addresses(5))


def test_recipient_added_to_a_finished_batch_is_the_only_one_sent(
        smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, 2)
    run_batch(job)
    batch_job(tmp_path, smtp_server, ca_file, 3)

    again = run_batch(job)

    assert again.code == EXIT_OK
    assert smtp_server.received_count_by_rcpt() == Counter(addresses(3))
    assert again.statuses == dict.fromkeys(addresses(3), "sent")


def test_journal_lives_in_state_dir_relative_to_the_job_folder(
        smtp_server, ca_file, tmp_path, password_env, monkeypatch):
    folder = tmp_path / "jobs"
    job = batch_job(folder, smtp_server, ca_file, 2, extra="state_dir: state\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    run_batch(job)

    assert (folder / "state" / "job.sqlite").is_file()
    assert (folder / "state" / "job.lock").is_file()
    assert list(elsewhere.iterdir()) == []
    assert run_batch(job).report["resumed"] is True


def test_two_jobs_of_the_same_name_sharing_a_state_dir_are_refused_not_merged(
        smtp_server, ca_file, tmp_path, password_env):
    shared = tmp_path / "state"
    first = batch_job(tmp_path / "a", smtp_server, ca_file, 2, extra=f"state_dir: {shared}\n")
    second = batch_job(tmp_path / "b", smtp_server, ca_file, 2, extra=f"state_dir: {shared}\n")
    run_batch(first)

    clash = run_batch(second)

    assert clash.code == StateError.exit_code
    assert "belongs to another job file with the same name" in clash.error
    assert str(first) in clash.error
    assert len(smtp_server.messages) == 2


def test_job_file_moved_with_an_absolute_state_dir_keeps_its_batch(
        smtp_server, ca_file, tmp_path, password_env):
    shared = tmp_path / "state"
    job = batch_job(tmp_path / "a", smtp_server, ca_file, 2, extra=f"state_dir: {shared}\n")
    run_batch(job)
    moved = tmp_path / "b"
    (tmp_path / "a").rename(moved)

    again = run_batch(moved / "job.yaml")

    assert again.code == EXIT_OK
    assert again.report["resumed"] is True
    assert len(smtp_server.messages) == 2


def test_run_in_a_worker_thread_journals_like_one_in_the_main_thread(
        smtp_server, ca_file, tmp_path, password_env):
    job = load_job(batch_job(tmp_path, smtp_server, ca_file, 3))
    reports = []
    for day in (0, 0, 1):  # each run opens its own journal connection in its own thread
        options = RunOptions(now=NOW + dt.timedelta(days=day))
        worker = threading.Thread(target=lambda o=options: reports.append(run(job, o)))
        worker.start()
        worker.join(timeout=30)

    assert [(r.batch, r.resumed, r.counts["sent"]) for r in reports] == [
        (BATCH, False, 3), (BATCH, True, 3), ("2026-03-03", False, 3)]
    assert len(smtp_server.messages) == 6


def test_preparing_twice_on_one_journal_does_not_see_duplicates(
        smtp_server, ca_file, tmp_path):
    job = load_job(batch_job(tmp_path, smtp_server, ca_file, 3))
    with Journal(tmp_path / "j.sqlite") as journal:
        batch, _ = journal.batch("b")
        renderer = Renderer(job, NOW)

        assert prepare(job, renderer, journal, batch) == 3
        assert prepare(job, renderer, journal, batch) == 3
        assert journal.counts(batch)["pending"] == 3


def test_unwritable_state_dir_is_a_clear_error_before_anything_is_sent(
        smtp_server, ca_file, tmp_path, password_env):
    (tmp_path / "blocker").write_text("a file, not a folder")
    job = batch_job(tmp_path, smtp_server, ca_file, 2, extra="state_dir: blocker/state\n")

    result = run_batch(job)

    assert result.code == StateError.exit_code
    assert "blocker/state" in result.error
    assert smtp_server.messages == []


@pytest.mark.parametrize("option", ["new_batch", "resend_uncertain"])
def test_options_on_a_dry_run_leave_the_real_journal_alone(
        option, smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, 2)
    run_batch(job, dry_run=True, **{option: True})

    real = run_batch(job)

    assert real.report["batch"] == BATCH
    assert real.report["resumed"] is False
    assert real.code == EXIT_OK and len(smtp_server.messages) == 2


def test_deferred_recipients_make_the_exit_code_say_run_again(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(tempfail_every=1)
    job = batch_job(tmp_path, server, ca_file, 1,
                    retry={"attempts": 1, "backoff": 0.01, "max_backoff": 0.01, "max_time": 5})

    assert run_batch(job).code == EXIT_TEMPFAIL


def test_same_job_reached_through_a_symlinked_folder_keeps_its_batch(
        smtp_server, ca_file, tmp_path, password_env):
    shared = tmp_path / "state"
    job = batch_job(tmp_path / "real", smtp_server, ca_file, 2, extra=f"state_dir: {shared}\n")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    run_batch(job)

    again = run_batch(tmp_path / "link" / "job.yaml")

    assert again.code == EXIT_OK
    assert again.report["resumed"] is True
    assert len(smtp_server.messages) == 2


@contextmanager
def records(name: str) -> Iterator[list[logging.LogRecord]]:
    """The log records of one logger, whatever the CLI did to propagation in other tests."""
    caught: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = caught.append  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield caught
    finally:
        logger.removeHandler(handler)


def interrupted_batch(tmp_path, server, ca_file, extra=""):
    """A job whose batch at NOW stopped with user1 sent and user2, user3 pending."""
    server.set_faults(fail_login_after=1)
    job = batch_job(tmp_path, server, ca_file, 3, max_messages_per_connection=1, extra=extra)
    assert run_batch(job).code == EXIT_NOPERM
    server.set_faults(fail_login_after=None)
    server.reset()
    return job


def test_a_new_batch_is_refused_while_an_older_one_still_has_recipients_to_send(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory()
    job = interrupted_batch(tmp_path, server, ca_file)

    next_day = run_batch(job, now=NOW + dt.timedelta(days=1))

    assert next_day.code == EXIT_UNFINISHED
    assert f"batch {BATCH} is unfinished (2 recipient(s) still to send)" in next_day.error
    assert f"mailbatch run --batch {BATCH} {job}" in next_day.error
    assert server.connections == 0 and server.messages == []
    with Journal(tmp_path / ".mailbatch" / "job.sqlite") as journal:
        assert journal.latest("2026-03-03") is None  # nothing was started


def test_a_resume_under_another_time_zone_after_midnight_is_refused_not_sent_again(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory()
    job = interrupted_batch(tmp_path, server, ca_file)  # 2026-03-02 09:00 UTC
    tokyo = dt.timezone(dt.timedelta(hours=15))  # the same instant is 2026-03-03 there

    again = run_batch(job, now=NOW.astimezone(tokyo))

    assert again.code == EXIT_UNFINISHED
    assert server.messages == []


def test_the_unfinished_batch_is_finished_by_name_with_the_dates_it_began_with(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory()
    job = interrupted_batch(tmp_path, server, ca_file, extra='headers: {X-Day: "{{ today }}"}\n')

    late = run_batch(job, now=NOW + dt.timedelta(days=1), batch=BATCH)

    assert late.code == EXIT_OK
    assert late.report["batch"] == BATCH and late.report["resumed"] is True
    assert server.received_count_by_rcpt() == Counter(["user2@example.org", "user3@example.org"])
    assert {m.message["X-Day"] for m in server.messages} == {BATCH}
    server.reset()
    assert run_batch(job, now=NOW + dt.timedelta(days=1)).report["batch"] == "2026-03-03"
    assert server.received_count_by_rcpt() == Counter(addresses(3))


def test_naming_a_batch_the_job_never_had_is_a_usage_error(
        smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, 2)

    outcome = run_batch(job, batch="1999-01-01")

    assert outcome.code == EXIT_USAGE
    assert "the job has no batch '1999-01-01'" in outcome.error
    assert smtp_server.connections == 0


def test_new_batch_option_starts_anyway_and_warns_about_the_unfinished_one(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory()
    job = interrupted_batch(tmp_path, server, ca_file)

    with records("mailbatch.batch.batches") as caught:
        fresh = run_batch(job, now=NOW + dt.timedelta(days=1), new_batch=True)

    assert fresh.code == EXIT_OK and fresh.report["batch"] == "2026-03-03"
    warnings = [r.getMessage() for r in caught if r.levelno == logging.WARNING]
    assert any(f"while batch {BATCH} still has 2 recipient(s) to send" in w for w in warnings)


def test_a_batch_left_with_only_uncertain_recipients_does_not_block_the_next(
        smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, 2)
    run_batch(job)
    with Journal(tmp_path / ".mailbatch" / "job.sqlite") as journal:
        journal.mark(BATCH, "user1@example.org", "uncertain")

    next_day = run_batch(job, now=NOW + dt.timedelta(days=1))

    assert next_day.code == EXIT_OK and next_day.report["batch"] == "2026-03-03"


def test_a_resume_renders_with_the_clock_of_the_batchs_first_run(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory()
    job = interrupted_batch(tmp_path, server, ca_file,
                            extra='headers: {X-Clock: "{{ now.isoformat() }}"}\n')

    run_batch(job, now=NOW + dt.timedelta(hours=5))

    assert {m.message["X-Clock"] for m in server.messages} == {NOW.isoformat()}


def test_resume_is_not_blocked_by_an_attachment_removed_after_its_message_was_sent(
        smtp_server, ca_file, tmp_path, password_env):
    listed = addresses(3)
    extra = 'attachments:\n  - "files/{{ recipient_address }}.txt"\n'
    job = batch_job(tmp_path, smtp_server, ca_file, listed, extra=extra)
    for address in listed:
        (tmp_path / "files").mkdir(exist_ok=True)
        (tmp_path / "files" / f"{address}.txt").write_text(f"for {address}\n")
    smtp_server.set_faults(reject_pattern=r"^user3@")  # user3 is refused: settled, not resent
    assert run_batch(job).counts == Counter({"sent": 2, "refused": 1})
    for address in listed:  # the files of a settled batch may be cleaned up
        (tmp_path / "files" / f"{address}.txt").unlink()
    smtp_server.reset()

    again = run_batch(job)

    assert again.error is None
    assert again.counts == Counter({"sent": 2, "refused": 1})
    assert smtp_server.messages == []


def test_resume_still_refuses_to_send_when_a_message_still_to_send_cannot_be_rendered(
        smtp_server, ca_file, tmp_path, password_env):
    listed = addresses(3)
    extra = 'attachments:\n  - "files/{{ recipient_address }}.txt"\n'
    job = batch_job(tmp_path, smtp_server, ca_file, listed, extra=extra)
    (tmp_path / "files").mkdir()
    for address in listed:
        (tmp_path / "files" / f"{address}.txt").write_text(f"for {address}\n")
    smtp_server.set_faults(tempfail_every=1)
    first = run_batch(job)
    assert first.code == EXIT_TEMPFAIL  # everyone deferred: 451 to every message
    smtp_server.set_faults(tempfail_every=None)
    (tmp_path / "files" / f"{listed[1]}.txt").unlink()
    smtp_server.reset()

    again = run_batch(job)

    assert again.code == EXIT_DATA
    assert listed[1] in (again.error or "")
    assert smtp_server.messages == []


@pytest.mark.parametrize("failure", ["password not set", "login refused"])
def test_a_batch_whose_run_stopped_before_its_first_message_does_not_block_the_next_one(
        failure, smtp_server_factory, ca_file, tmp_path, password_env, monkeypatch):
    # Yesterday's cron run failed at the password or the login: nobody had a message, so
    # today's batch is sent (and yesterday's is dropped, with a warning), not refused.
    server = smtp_server_factory()
    job = batch_job(tmp_path, server, ca_file, 3)
    if failure == "password not set":
        monkeypatch.delenv(password_env)
    else:
        server.set_faults(fail_login_after=0)
    assert run_batch(job).code in (EXIT_CONFIG, EXIT_NOPERM)
    monkeypatch.setenv(password_env, PASSWORD)
    server.set_faults(fail_login_after=None)
    server.reset()

    with records("mailbatch.batch.batches") as caught:
        next_day = run_batch(job, now=NOW + dt.timedelta(days=1))

    assert next_day.code == EXIT_OK and next_day.report["batch"] == "2026-03-03"
    assert server.received_count_by_rcpt() == Counter(addresses(3))
    warnings = [r.getMessage() for r in caught if r.levelno == logging.WARNING]
    assert any(f"batch {BATCH} never began sending" in w for w in warnings)
    with Journal(tmp_path / ".mailbatch" / "job.sqlite") as journal:
        assert journal.find(BATCH) is None and journal.unfinished() == []


def test_a_batch_whose_run_stopped_before_its_first_message_is_resumed_the_same_day(
        smtp_server, ca_file, tmp_path, password_env, monkeypatch):
    job = batch_job(tmp_path, smtp_server, ca_file, 3)
    monkeypatch.delenv(password_env)
    run_batch(job)
    monkeypatch.setenv(password_env, PASSWORD)

    again = run_batch(job)

    assert again.code == EXIT_OK
    assert again.report["batch"] == BATCH and again.report["resumed"] is True
    assert smtp_server.received_count_by_rcpt() == Counter(addresses(3))


@pytest.mark.parametrize("tried", [("deferred", 1), ("pending", 1), ("sent", 1)])
def test_a_batch_is_never_dropped_once_a_recipient_of_it_was_tried(tmp_path, tried):
    status, attempts = tried
    with Journal(tmp_path / "job.sqlite") as journal:
        batch = journal.create("2026-03-02", NOW)
        for key in ("a@example.org", "b@example.org"):
            journal.register(batch, key, 0, key, f"<{key}>", [])
        journal.mark(batch, "a@example.org", status, attempts=attempts)

        assert journal.drop_unbegun(batch) is False
        assert journal.find(batch) is not None and journal.counts(batch)["pending"] >= 1

        untried = journal.create("2026-03-03", NOW)
        journal.register(untried, "a@example.org", 0, "a@example.org", "<a>", [])
        assert journal.drop_unbegun(untried) is True
        assert journal.find(untried) is None and journal.counts(untried)["pending"] == 0
