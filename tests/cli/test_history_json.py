"""`mailbatch history`, `mailbatch status`, and `--json` for them, `check` and `run`: one JSON
object on stdout for a program, errors on stderr with the exit code as always."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from mailbatch.batch.journal import STATUSES
from mailbatch.cli.main import main
from mailbatch.errors import (
    EXIT_FAILURES,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_NOPERM,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
)
from tests.batchjobs import addresses, batch_job, spawn
from tests.helpers import PASSWORD_ENV, smtp_block, write_job

N = 4
REPORT_KEYS = {"job", "job_file", "batch", "resumed", "dry_run", "started", "finished",
               "server", "counts", "error", "test_send", "outbox", "total"}
RUN_KEYS = REPORT_KEYS | {"report", "report_csv", "report_error", "exit_code"}
ROW_KEYS = {"number", "address", "status", "code", "message", "message_id", "attachments",
            "attempts", "time", "to", "cc", "bcc"}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def as_json(out: str) -> dict[str, Any]:
    document = json.loads(out)
    assert isinstance(document, dict)
    return document


@pytest.fixture
def ran(smtp_server_factory, ca_file, tmp_path, password_env, capsys) -> Path:
    """A job run once with user2 refused (batch "fixed"), then a second batch all sent."""
    server = smtp_server_factory(reject_pattern="user2@")
    job = batch_job(tmp_path, server, ca_file, N, extra="batch: fixed\n")
    assert cli(capsys, "run", str(job))[0] == EXIT_PARTIAL
    server.set_faults(reject_pattern=None)
    assert cli(capsys, "run", "--new-batch", str(job))[0] == EXIT_OK
    return job


# -- history ---------------------------------------------------------------------------------


def test_history_lists_each_batch_newest_first_with_times_counts_and_report(ran, capsys):
    code, out, err = cli(capsys, "history", str(ran))

    assert code == EXIT_OK and err == ""
    header, newest, oldest = out.splitlines()
    assert header.split() == ["BATCH", "STARTED", "LAST", "RUN", "ENDED", "RECIPIENTS",
                              "REPORT"]
    assert newest.startswith("fixed#2 ") and "4 sent" in newest
    assert oldest.startswith("fixed ") and "3 sent, 1 refused" in oldest
    assert oldest.rstrip().endswith("job-fixed.json")


def test_history_json_has_one_object_per_batch_in_its_documented_shape(ran, capsys):
    code, out, _ = cli(capsys, "history", "--json", str(ran))

    assert code == EXIT_OK
    document = as_json(out)
    assert set(document) == {"job", "job_file", "journal", "journal_exists", "batches"}
    assert document["journal_exists"] is True
    assert [b["batch"] for b in document["batches"]] == ["fixed#2", "fixed"]
    oldest = document["batches"][1]
    assert set(oldest) == {"batch", "started", "finished", "counts", "total", "report",
                           "report_csv"}
    assert oldest["counts"] == {**dict.fromkeys(STATUSES, 0), "sent": 3, "refused": 1}
    assert Path(oldest["report"]).is_file() and Path(oldest["report_csv"]).is_file()


def test_a_job_that_never_ran_says_so_and_nothing_is_created(smtp_server, ca_file, tmp_path,
                                                             capsys):
    job = batch_job(tmp_path, smtp_server, ca_file, N)

    code, out, _ = cli(capsys, "history", str(job))
    assert code == EXIT_OK
    assert out.startswith("job: no batches yet: nothing has been sent (no journal at ")

    code, out, _ = cli(capsys, "status", "--json", str(job))
    assert code == EXIT_OK
    document = as_json(out)
    assert (document["journal_exists"], document["batch"], document["not_sent"]) == (
        False, None, [])
    assert not (tmp_path / ".mailbatch").exists()


# -- status ----------------------------------------------------------------------------------


def test_status_shows_the_latest_batch_or_the_one_named(ran, capsys):
    code, out, _ = cli(capsys, "status", str(ran))
    assert code == EXIT_OK
    assert out.splitlines()[0].startswith("job: batch fixed#2: started ")
    assert out.splitlines()[1] == "every recipient was sent"

    code, out, _ = cli(capsys, "status", "--batch", "fixed", str(ran))
    assert code == EXIT_OK
    head, title, row = out.splitlines()
    assert "3 sent, 1 refused; report: " in head
    assert title == "not sent (1 of 4):"
    assert row.split()[:4] == ["2", "user2@example.org", "refused", "550"]
    assert "User unknown (at RCPT TO user2@example.org)" in row


def test_status_of_an_unknown_batch_is_a_usage_error_naming_the_known_ones(ran, capsys):
    code, out, err = cli(capsys, "status", "--batch", "nope", str(ran))

    assert code == EXIT_USAGE and out == ""
    assert "the job has no batch 'nope' (fixed#2, fixed)" in err


def test_status_json_lists_the_recipients_not_sent_as_the_report_does(ran, capsys):
    code, out, _ = cli(capsys, "status", "--json", "--batch", "fixed", str(ran))

    assert code == EXIT_OK
    document = as_json(out)
    assert set(document) == {"job", "job_file", "journal", "journal_exists", "batch",
                             "not_sent"}
    assert document["batch"]["batch"] == "fixed"
    (row,) = document["not_sent"]
    assert set(row) == ROW_KEYS
    assert (row["number"], row["address"], row["status"], row["code"]) == (
        2, "user2@example.org", "refused", 550)
    report = json.loads(Path(document["batch"]["report"]).read_text(encoding="utf-8"))
    assert row == report["recipients"][1]  # the same row as in the report


def test_status_of_a_batch_left_to_send_says_how_to_finish_it(
        smtp_server_factory, ca_file, tmp_path, password_env, capsys):
    server = smtp_server_factory(defer_pattern="user3@")
    job = batch_job(tmp_path, server, ca_file, N, extra="batch: fixed\n",
                    retry={"attempts": 1, "backoff": 0.01, "max_time": 1})
    cli(capsys, "run", str(job))

    code, out, _ = cli(capsys, "status", str(job))

    assert code == EXIT_OK
    assert "user3@example.org" in out and "deferred" in out and "450" in out
    assert f"next: 'mailbatch run --batch fixed {job}' sends the 1 pending or deferred" in out


# -- check --json ----------------------------------------------------------------------------


def test_check_json_is_the_summary_with_warnings_and_notes(smtp_server, ca_file, tmp_path,
                                                           capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)  # a warning: others can read it
    job = write_job(tmp_path, smtp_block(smtp_server, ca_file, password_env=None,
                                         password_file="secret.txt")
                    + 'from: "r@example.org"\nsubject: "s"\ntext: "t"\nhtml: "<p>t</p>"\n'
                    + 'cc: "{{ deputy }}"\nrecipients:\n'
                    + '  - {email: a@example.org, deputy: "d1@example.org, d2@example.org"}\n'
                    + "  - {email: b@example.org, deputy: d3@example.org}\n")

    code, out, err = cli(capsys, "check", "--json", str(job))

    assert code == EXIT_OK
    document = as_json(out)
    assert set(document) == {"job", "job_file", "batch", "recipients", "attachments",
                             "messages", "html", "images", "server", "password", "login",
                             "warnings", "notes", "widened"}
    assert document["recipients"] == 2 and document["login"] is None
    assert document["messages"]["largest_bytes"] > 0
    assert document["html"]["max_bytes"] > 0
    assert document["password"] == f"password from file {secret}"
    (warning,) = document["warnings"]
    assert warning.startswith(f"password: {secret} is readable by group or others")
    (note,) = document["notes"]
    assert note.startswith("cc gives more addresses than its template names (1) for 1")
    assert document["widened"] == [{"key": "cc", "recipients": 1, "example": "a@example.org",
                                    "addresses": ["d1@example.org", "d2@example.org"],
                                    "named": 1}]
    assert "OK, nothing sent" not in out  # no text lines on stdout
    assert "warning:" in err  # still said to a person too


def test_check_json_with_connect_says_the_login_worked(smtp_server, ca_file, tmp_path,
                                                       password_env, capsys):
    job = batch_job(tmp_path, smtp_server, ca_file, 1)

    code, out, _ = cli(capsys, "check", "--json", "--connect", str(job))

    assert code == EXIT_OK
    assert as_json(out)["login"] == {"ok": True, "max_size": 33_554_432}


# -- run --json ------------------------------------------------------------------------------


def test_run_json_prints_the_outcome_on_stdout_and_no_summary_line(
        smtp_server, ca_file, tmp_path, password_env, capsys):
    job = batch_job(tmp_path, smtp_server, ca_file, N, extra="batch: fixed\n")

    code, out, err = cli(capsys, "run", "--json", str(job))

    assert code == EXIT_OK and err == ""
    document = as_json(out)
    assert set(document) == RUN_KEYS
    assert (document["batch"], document["exit_code"], document["error"]) == ("fixed", 0, None)
    assert document["counts"]["sent"] == N and document["total"] == N
    report = json.loads(Path(document["report"]).read_text(encoding="utf-8"))
    assert {k: v for k, v in report.items() if k != "recipients"} == {
        k: v for k, v in document.items() if k in REPORT_KEYS}


def test_run_json_of_a_dry_run_says_where_the_messages_are(smtp_server, ca_file, tmp_path,
                                                           capsys):
    job = batch_job(tmp_path, smtp_server, ca_file, 2, extra="batch: fixed\n")

    code, out, _ = cli(capsys, "run", "--json", "--dry-run", str(job))

    document = as_json(out)
    assert code == EXIT_OK and document["dry_run"] is True
    assert len(list(Path(document["outbox"]).glob("*.eml"))) == 2


def test_run_json_that_fails_after_sending_began_still_says_what_was_sent(
        smtp_server_factory, ca_file, tmp_path, password_env, capsys):
    server = smtp_server_factory(reject_pattern="user[3-9]@")
    job = batch_job(tmp_path, server, ca_file, 6, extra="batch: fixed\n",
                    max_failures=2)

    code, out, err = cli(capsys, "run", "--json", str(job))

    assert code == EXIT_FAILURES
    document = as_json(out)
    assert document["exit_code"] == EXIT_FAILURES
    assert document["error"].startswith("stopped: 2 messages in a row were refused")
    assert document["counts"]["sent"] == 2 and document["counts"]["pending"] == 2
    assert Path(document["report"]).is_file()
    *_, last = err.splitlines()  # the refusals were logged as warnings before it
    assert last.startswith("mailbatch: error: stopped: 2 messages in a row")
    assert "job: batch fixed" not in err  # the error, and no summary line after it


def test_run_json_that_fails_before_sending_prints_nothing_on_stdout(
        smtp_server, ca_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    job = batch_job(tmp_path, smtp_server, ca_file, 2)

    code, out, err = cli(capsys, "run", "--json", str(job))

    assert code == EXIT_NOPERM and out == ""
    assert err.startswith("mailbatch: error: login refused")


def test_run_json_after_a_second_signal_still_says_what_was_sent(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(slow_data_reply=(2, 30))
    job = batch_job(tmp_path / "job", server, ca_file, N, timeout=60, extra="batch: fixed\n")
    process = spawn(job, "--json")
    server.wait_for(2, timeout=20)

    process.send_signal(signal.SIGTERM)
    process.stderr.readline()  # the first signal was handled
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)

    assert process.returncode == EXIT_INTERRUPTED, err
    document = as_json(out)
    assert document["exit_code"] == EXIT_INTERRUPTED
    assert document["error"].startswith("interrupted at once (a second signal)")
    assert document["counts"]["sent"] == 1 and document["counts"]["uncertain"] == 1
    assert sorted(server.received_count_by_rcpt()) == addresses(2)


def test_run_json_when_only_the_report_could_not_be_written_says_so(
        smtp_server, ca_file, tmp_path, password_env, capsys, monkeypatch):
    from mailbatch.batch import runner

    job = batch_job(tmp_path, smtp_server, ca_file, 2, extra="batch: fixed\n")
    # The folder turns unwritable after the check made before sending (a disk that fills).
    monkeypatch.setattr(runner, "check_writable", lambda report: None)
    (tmp_path / "reports").write_text("a file where the report folder should be\n")

    code, out, err = cli(capsys, "run", "--json", str(job))

    document = as_json(out)
    assert code == EXIT_IO == document["exit_code"]
    assert document["counts"]["sent"] == 2 and document["error"] is None
    assert document["report"] is None and "cannot write" in document["report_error"]
    assert "mailbatch: error: " in err
