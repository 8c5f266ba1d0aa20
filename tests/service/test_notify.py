"""The notify summary, as the job's owner receives it from the real test server."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mailbatch.batch.report import Report
from mailbatch.cli import main as cli
from mailbatch.errors import SessionLostError
from mailbatch.job.model import load_job
from mailbatch.service.notify import send_summary
from tests.helpers import smtp_block, write_job

OWNER = "owner@example.org"


def notify_job(tmp_path: Path, server, ca_file, notify: str = OWNER, *,
               recipients: tuple[str, ...] = ("ann", "bob"), text: str = "Hello {{ name }}",
               smtp: dict | None = None) -> Path:
    people = "\n".join(f"  - {{email: {r}@example.org, name: {r.title()}}}" for r in recipients)
    return write_job(tmp_path, smtp_block(server, ca_file, **(smtp or {})) + (
        "from: Sales Reports <reports@example.org>\n"
        "subject: Weekly figures\n"
        f"text: '{text}'\n"
        f"recipients:\n{people}\n"
        "report: reports/weekly\n"
        f"notify: {notify}\n"))


def text_of(received) -> str:
    return received.message.get_content().replace("\r\n", "\n")


def summaries(server) -> list:
    return [m for m in server.messages if m.rcpt_tos == [OWNER]]


def test_a_run_with_a_refused_recipient_tells_the_owner_counts_reasons_and_report_path(
        tmp_path, smtp_server_factory, ca_file, password_env):
    server = smtp_server_factory(reject_pattern=r"^bob@")
    job = notify_job(tmp_path, server, ca_file)
    assert cli.main(["run", str(job)]) == 1
    [summary] = summaries(server)
    message = summary.message
    assert summary.mail_from == "reports@example.org"
    assert message["From"] == "Sales Reports <reports@example.org>"
    assert message["To"] == OWNER
    assert message["Subject"].startswith("[mailbatch] job ")
    assert message["Subject"].endswith(": 1 of 2 not delivered")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@example.org>")
    body = text_of(summary)
    assert f"Job:       job ({job})\n" in body
    assert "Result:    1 of 2 not delivered\n" in body
    assert "Counts:    1 sent, 1 refused\n" in body
    assert "Not delivered:\n  bob@example.org: refused: 550 5.1.1 User unknown" in body
    report = tmp_path / "reports" / "weekly.json"
    assert f"Report:    {report}\n           {tmp_path / 'reports' / 'weekly.csv'}\n" in body
    assert json.loads(report.read_text())["counts"]["refused"] == 1
    assert "s3cret" not in body


def test_an_owner_with_a_display_name_gets_the_summary_at_the_address_alone(
        tmp_path, smtp_server_factory, ca_file, password_env):
    server = smtp_server_factory(reject_pattern=r"^bob@")
    owner = '"Report Owner (Sales: EMEA, Middle East & Africa)" <owner@example.org>'
    job = notify_job(tmp_path, server, ca_file, notify=f"'{owner}'")
    sender = "Sales Reports <reports@example.org>"
    long_sender = '"ACME Reporting (Northern Europe, Middle East & Africa): Sales Operations" ' \
        "<reports@example.org>"
    job.write_text(job.read_text().replace(f"from: {sender}", f"from: '{long_sender}'"))

    assert cli.main(["run", str(job)]) == 1

    [summary] = summaries(server)
    message = summary.message
    assert message["To"].addresses[0].display_name == \
        "Report Owner (Sales: EMEA, Middle East & Africa)"
    assert message["From"].addresses[0].display_name == \
        "ACME Reporting (Northern Europe, Middle East & Africa): Sales Operations"
    head = summary.data.split(b"\r\n\r\n", 1)[0]
    assert not message.defects and [ln for ln in head.splitlines() if len(ln) > 78] == []


def test_a_run_with_no_failures_sends_no_summary_by_default(
        tmp_path, smtp_server, ca_file, password_env):
    assert cli.main(["run", str(notify_job(tmp_path, smtp_server, ca_file))]) == 0
    assert [m.rcpt_tos for m in smtp_server.messages] == [["ann@example.org"],
                                                          ["bob@example.org"]]


def test_when_always_the_owner_hears_of_a_run_that_went_well_too(
        tmp_path, smtp_server, ca_file, password_env):
    job = notify_job(tmp_path, smtp_server, ca_file, notify=f"{{to: {OWNER}, when: always}}")
    assert cli.main(["run", str(job)]) == 0
    [summary] = summaries(smtp_server)
    assert summary.message["Subject"].endswith(": all 2 sent")
    body = text_of(summary)
    assert "Counts:    2 sent\n" in body
    assert "Not delivered" not in body


def test_a_dry_run_never_sends_a_summary(tmp_path, smtp_server, ca_file, password_env):
    job = notify_job(tmp_path, smtp_server, ca_file, notify=f"{{to: {OWNER}, when: always}}")
    assert cli.main(["run", "--dry-run", str(job)]) == 0
    assert smtp_server.messages == []


def test_deferred_recipients_are_listed_with_the_servers_reply_and_what_happens_next(
        tmp_path, smtp_server_factory, ca_file, password_env):
    server = smtp_server_factory(tempfail_every=2)  # the 2nd DATA gets 451, the summary not
    job = notify_job(tmp_path, server, ca_file, smtp={"retry": {"attempts": 1}})
    assert cli.main(["run", str(job)]) == 75
    [summary] = summaries(server)
    body = text_of(summary)
    assert "Counts:    1 deferred, 1 sent\n" in body
    assert "  bob@example.org: deferred: 451 gave up after 1 attempt(s): 4.3.0 Try again later " \
        "(at end of DATA)\n" in body
    assert "Next:      deferred and pending recipients are sent by the next run of the same " \
           "batch\n" in body


def test_a_run_stopped_by_the_server_after_sending_began_tells_the_owner_the_error(
        tmp_path, smtp_server_factory, ca_file, password_env):
    server = smtp_server_factory(close_after_per_connection=1)  # 421 and hang up after one
    job = notify_job(tmp_path, server, ca_file, smtp={"retry": {"attempts": 1}})
    assert cli.main(["run", str(job)]) == 75
    [summary] = summaries(server)  # a session of its own: its first message goes through
    assert summary.message["Subject"].endswith(": stopped with 1 of 2 sent")
    body = text_of(summary)
    assert "Error:     000002-bob@example.org: the server kept failing" in body
    assert "Counts:    1 deferred, 1 sent\n" in body
    assert "  bob@example.org: deferred: 421 " in body
    assert f"Report:    {tmp_path / 'reports' / 'weekly.json'}" in body


def test_a_render_error_tells_the_owner_that_nothing_was_sent_and_why(
        tmp_path, smtp_server, ca_file, password_env):
    job = notify_job(tmp_path, smtp_server, ca_file, text="Hello {{ nickname }}")
    assert cli.main(["run", str(job)]) == 65
    [summary] = smtp_server.messages
    assert summary.rcpt_tos == [OWNER]
    assert summary.message["Subject"] == "[mailbatch] job: failed, nothing sent"
    body = text_of(summary)
    assert "Error:     2 message(s) could not be rendered; nothing was sent\n" in body
    assert "'nickname' is undefined" in body
    assert "Nothing was sent.\n" in body


def test_a_summary_that_cannot_be_delivered_is_logged_and_the_exit_code_stands(
        tmp_path, smtp_server_factory, ca_file, password_env, capsys):
    server = smtp_server_factory(reject_pattern=r"^(bob|owner)@")
    job = notify_job(tmp_path, server, ca_file)
    assert cli.main(["run", str(job)]) == 1
    assert summaries(server) == []
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f" WARNING job: notify summary to {OWNER} not sent: 550 5.1.1 User unknown "
        f"(at RCPT TO {OWNER})")


def test_send_summary_never_raises_when_the_server_is_gone(
        tmp_path, smtp_server, ca_file, password_env, caplog):
    job = load_job(notify_job(tmp_path, smtp_server, ca_file))
    report = Report(job="job", job_file=str(job.path), batch="b1", resumed=False,
                    dry_run=False, started="", finished="", server={}, counts={"failed": 1})
    smtp_server.stop()
    with caplog.at_level(logging.WARNING, logger="mailbatch.service.notify"):
        assert send_summary(job, report, SessionLostError("lost")) is False
    [record] = caplog.records
    assert record.getMessage().startswith(f"job: notify summary to {OWNER} not sent: "
                                          f"{smtp_server.host}:{smtp_server.port}: cannot connect")


@pytest.mark.parametrize(("when", "counts", "sent"), [
    ("failures", {"sent": 2}, False),
    ("failures", {"sent": 1, "uncertain": 1}, True),
    ("failures", {"sent": 1, "pending": 1}, True),
    ("always", {"sent": 2}, True),
])
def test_summary_is_sent_for_problems_or_always(tmp_path, smtp_server, ca_file, password_env,
                                                when, counts, sent):
    job = load_job(notify_job(tmp_path, smtp_server, ca_file,
                              notify=f"{{to: {OWNER}, when: {when}}}"))
    report = Report(job="job", job_file=str(job.path), batch="b1", resumed=False,
                    dry_run=False, started="", finished="", server={}, counts=counts)
    assert send_summary(job, report) is sent
    assert len(summaries(smtp_server)) == sent


# -- cron: quiet on success, one line on a problem ---------------------------------------------


def test_quiet_run_prints_nothing_when_all_is_sent_and_the_summary_line_when_not(
        tmp_path, smtp_server_factory, ca_file, password_env, capsys):
    server = smtp_server_factory()
    (tmp_path / "ok").mkdir()
    (tmp_path / "partial").mkdir()
    job = notify_job(tmp_path / "ok", server, ca_file)
    assert cli.main(["run", "-q", str(job)]) == 0
    assert capsys.readouterr() == ("", "")

    server.set_faults(reject_pattern=r"^bob@")
    job = notify_job(tmp_path / "partial", server, ca_file, notify=f"{{to: {OWNER}}}")
    assert cli.main(["run", "-q", str(job)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    report = tmp_path / "partial" / "reports" / "weekly.json"
    batch = json.loads(report.read_text())["batch"]
    assert err == f"job: batch {batch}: 1 sent, 1 refused; report: {report}\n"


def test_the_scheduler_remembers_no_told_outcome_for_a_job_without_notify(
        tmp_path, smtp_server, ca_file, password_env):
    from mailbatch.batch.runner import run
    from mailbatch.service.notify import Notifier

    path = write_job(tmp_path, smtp_block(smtp_server, ca_file) + (
        "from: reports@example.org\nsubject: x\ntext: hi\n"
        "recipients: [{email: ann@example.org}]\n"))
    job = load_job(path)
    notifier = Notifier()

    sent = notifier.after_run(job, run(job), None)

    assert sent is False
    assert notifier.told(job.path) == {}  # the status file's "notified" stays empty
