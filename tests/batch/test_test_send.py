"""Test sends: `mailbatch run --to ADDRESS [--limit N]` sends real messages to one test address,
marked [TEST], and leaves the batch itself untouched."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mailbatch.cli.main import main
from tests.helpers import smtp_block, write_job

TESTER = "tester@example.net"
JOB = """
    from: "Reports <reports@example.org>"
    subject: "Report for {{ name }}"
    text: "Hello {{ name }}"
    cc: "lead@example.org"
    bcc: "archive@example.org"
    attachments: ["files/{{ name }}.txt"]
    recipients:
      - {email: ann@example.org, name: Ann}
      - {email: bob@example.org, name: Bob}
      - {email: cat@example.org, name: Cat}
"""
FILES = {"files/Ann.txt": "for Ann", "files/Bob.txt": "for Bob", "files/Cat.txt": "for Cat"}


@pytest.fixture
def job_path(smtp_server, ca_file, tmp_path, password_env) -> Path:
    return write_job(tmp_path, JOB + smtp_block(smtp_server, ca_file), FILES)


def report_of(tmp_path: Path, prefix: str) -> dict:
    (path,) = tmp_path.glob(f"reports/job-{prefix}*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def test_a_test_send_goes_to_the_test_address_only_marked_test(
        job_path, smtp_server, tmp_path, capsys):
    assert main(["run", "--to", TESTER, str(job_path)]) == 0

    (received,) = smtp_server.messages  # one message by default
    assert received.rcpt_tos == [TESTER]  # no Cc, no Bcc, not the recipient
    message = received.message
    assert message["To"] == TESTER
    assert message["Cc"] is None and message["Bcc"] is None
    assert message["Subject"] == "[TEST] Report for Ann"
    assert message.get_body(("plain",)).get_content().strip() == "Hello Ann"
    assert [(p.get_filename(), p.get_content()) for p in message.iter_attachments()] == \
        [("Ann.txt", "for Ann")]
    assert "test send test-" in capsys.readouterr().err


def test_limit_sends_the_first_n_messages_to_the_test_address(job_path, smtp_server, capsys):
    assert main(["run", "--to", TESTER, "--limit", "2", str(job_path)]) == 0

    subjects = [m.message["Subject"] for m in smtp_server.messages]
    assert subjects == ["[TEST] Report for Ann", "[TEST] Report for Bob"]
    assert all(m.rcpt_tos == [TESTER] for m in smtp_server.messages)


def test_limit_all_sends_every_message_to_the_test_address(job_path, smtp_server, capsys):
    assert main(["run", "--to", TESTER, "--limit", "all", str(job_path)]) == 0

    assert len(smtp_server.messages) == 3
    assert smtp_server.received_count_by_rcpt() == {TESTER: 3}
    assert smtp_server.connections == 1 and smtp_server.logins == 1


def test_a_test_send_is_reported_as_a_test_send_not_as_the_batch(job_path, tmp_path, capsys):
    assert main(["run", "--to", TESTER, str(job_path)]) == 0

    report = report_of(tmp_path, "test-")
    assert report["test_send"] is True
    assert report["batch"].startswith("test-")
    assert report["counts"]["sent"] == 1 and report["total"] == 1
    (row,) = report["recipients"]
    assert row["address"] == "ann@example.org"
    assert row["message"].startswith(f"test send to {TESTER}: ")
    (csv_path,) = tmp_path.glob("reports/job-test-*.csv")
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    assert [r["message"].split(":")[0] for r in rows] == [f"test send to {TESTER}"]
    assert not (tmp_path / ".mailbatch" / "job.sqlite").exists()  # the journal is untouched
    # the envelope it went with, not the recipient's own
    assert (row["to"], row["cc"], row["bcc"]) == ([TESTER], [], [])


def test_the_real_run_after_a_test_send_still_sends_to_everyone(
        job_path, smtp_server, tmp_path, capsys):
    assert main(["run", "--to", TESTER, "--limit", "all", str(job_path)]) == 0
    test_ids = {m.message["Message-ID"] for m in smtp_server.messages}
    smtp_server.reset()

    assert main(["run", str(job_path)]) == 0

    received = smtp_server.received_count_by_rcpt()
    assert received == {"ann@example.org": 1, "bob@example.org": 1, "cat@example.org": 1,
                        "lead@example.org": 3, "archive@example.org": 3}
    assert all(not m.message["Subject"].startswith("[TEST]") for m in smtp_server.messages)
    real_ids = {m.message["Message-ID"] for m in smtp_server.messages}
    assert not test_ids & real_ids  # a store that drops duplicate IDs keeps the real ones
    assert report_of(tmp_path, "20")["counts"]["sent"] == 3


def test_every_message_must_render_even_when_only_one_is_tested(
        job_path, smtp_server, tmp_path, capsys):
    (tmp_path / "files" / "Cat.txt").unlink()

    assert main(["run", "--to", TESTER, str(job_path)]) == 65

    assert "(cat@example.org)" in capsys.readouterr().err
    assert smtp_server.messages == []


@pytest.mark.parametrize("argv", [
    ["--to", "not-an-address"],
    ["--to", TESTER, "--limit", "0"],
    ["--to", TESTER, "--limit", "some"],
])
def test_a_bad_test_address_or_limit_is_a_usage_error(job_path, smtp_server, argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", *argv, str(job_path)])

    assert exit_.value.code == 2
    assert "mailbatch run: error: argument" in capsys.readouterr().err
    assert smtp_server.connections == 0


@pytest.mark.parametrize("flag", ["--dry-run", "--new-batch", "--resend-uncertain"])
def test_a_test_send_refuses_options_that_act_on_the_batch(job_path, smtp_server, flag, capsys):
    assert main(["run", "--to", TESTER, flag, str(job_path)]) == 2

    assert f"drop {flag}" in capsys.readouterr().err
    assert smtp_server.connections == 0


def test_two_test_sends_in_the_same_second_keep_a_report_each(job_path, smtp_server):
    import datetime as dt

    from mailbatch import load_job
    from mailbatch.batch.runner import RunOptions, run

    job = load_job(job_path)
    now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)

    first = run(job, RunOptions(now=now, test_to=TESTER))
    second = run(job, RunOptions(now=now, test_to=TESTER, test_limit=None))

    assert (first.batch, second.batch) == ("test-20260302T090000", "test-20260302T090000#2")
    assert first.json_path != second.json_path
    assert json.loads(first.json_path.read_text())["total"] == 1
    assert json.loads(second.json_path.read_text())["total"] == 3
