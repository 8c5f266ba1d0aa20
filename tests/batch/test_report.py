"""The delivery report: complete, valid JSON and CSV, written atomically, never holding a secret."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from mailbatch import RunOptions, load_job, run
from mailbatch.batch.journal import Entry
from mailbatch.batch.report import CSV_COLUMNS, Report, write_report
from mailbatch.cli.main import main
from mailbatch.errors import EXIT_OK, EXIT_PARTIAL, StateError
from tests.pipeline import make_job, read_report, run_cli
from tests.smtpserver import PASSWORD, USERNAME

JOB = """
    from: reports@example.org
    subject: "Figures for {{ region }}"
    text: "Hello {{ name }}\\n"
    recipients: people.csv
    attachments: ["files/{{ region }}.pdf"]
"""
FILES = {
    "people.csv": "email,name,region\nanne@example.org,Änne,north\nbad@example.org,Bad,north\n"
                  "carl@example.org,\"Carl, Jr.\",south\n",
    "files/north.pdf": b"%PDF north",
    "files/south.pdf": b"%PDF south, a little longer",
}
ADDRESSES = ["anne@example.org", "bad@example.org", "carl@example.org"]


@pytest.fixture
def mixed_batch(tmp_path, smtp_server_factory, ca_file, password_env, capsys):
    """Three recipients, the second refused by the server; returns (server, exit code)."""
    server = smtp_server_factory(reject_pattern=r"^bad@")
    job = make_job(tmp_path, server, ca_file, JOB, FILES)
    code, _ = run_cli(capsys, str(job))
    return server, code


def test_json_report_has_run_metadata_and_one_complete_row_per_recipient(mixed_batch,
                                                                         tmp_path):
    server, code = mixed_batch
    report, _ = read_report(tmp_path)

    assert code == EXIT_PARTIAL
    assert report["job"] == "job"
    assert report["job_file"] == str(tmp_path / "job.yaml")
    assert report["dry_run"] is False
    assert dt.datetime.fromisoformat(report["started"]) <= dt.datetime.fromisoformat(
        report["finished"])
    assert report["server"] == {"host": "127.0.0.1", "port": server.port, "security": "tls",
                                "username": USERNAME}
    assert report["counts"]["sent"] == 2 and report["counts"]["refused"] == 1
    assert report["total"] == 3
    assert report["error"] is None
    rows = report["recipients"]
    assert [r["address"] for r in rows] == ADDRESSES
    assert [r["number"] for r in rows] == [1, 2, 3]  # the list's row numbers, as people count
    assert [r["status"] for r in rows] == ["sent", "refused", "sent"]
    assert [r["code"] for r in rows] == [250, 550, 250]
    assert rows[1]["message"] == "5.1.1 User unknown (at RCPT TO bad@example.org)"
    received_ids = {m.rcpt_tos[0]: m.message["Message-ID"] for m in server.messages}
    assert rows[0]["message_id"] == received_ids["anne@example.org"]
    assert rows[2]["message_id"] == received_ids["carl@example.org"]
    assert rows[1]["message_id"].endswith("@example.org>")
    assert rows[0]["attachments"] == [{"name": "north.pdf", "size": 10,
                                       "type": "application/pdf"}]
    assert rows[2]["attachments"][0]["size"] == len(FILES["files/south.pdf"])
    for row in rows:
        assert dt.datetime.fromisoformat(row["time"]).tzinfo is not None


def test_csv_report_has_the_same_rows_as_the_json_report(mixed_batch, tmp_path):
    report, rows = read_report(tmp_path)
    csv_path = next((tmp_path / "reports").glob("*.csv"))

    with csv_path.open(encoding="utf-8", newline="") as file:
        assert tuple(next(csv.reader(file))) == CSV_COLUMNS
    assert len(rows) == 3
    for row, record in zip(rows, report["recipients"], strict=True):
        assert row["address"] == record["address"]
        assert row["status"] == record["status"]
        assert row["code"] == str(record["code"])
        assert row["message"] == record["message"]
        assert row["message_id"] == record["message_id"]
        assert row["time"] == record["time"]
    assert rows[0]["attachments"] == "north.pdf (10 bytes)"


def test_report_files_are_replaced_whole_and_leave_no_temporary_files(mixed_batch, tmp_path):
    names = sorted(p.name for p in (tmp_path / "reports").iterdir())

    batch = read_report(tmp_path)[0]["batch"]
    assert names == [f"job-{batch}.csv", f"job-{batch}.json"]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_no_file_and_no_output_ever_holds_the_password(tmp_path, smtp_server, ca_file,
                                                       password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, JOB, {
        **FILES, "people.csv": "email,name,region\nanne@example.org,Anne,north\n"})
    code, err = run_cli(capsys, "-vv", "--debug-smtp", str(job))
    assert code == EXIT_OK, err
    dry_code, dry_err = run_cli(capsys, "--dry-run", str(job))
    assert dry_code == EXIT_OK, dry_err

    secrets = [PASSWORD.encode(), base64.b64encode(f"\0{USERNAME}\0{PASSWORD}".encode()),
               base64.b64encode(PASSWORD.encode())]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in files)
    assert any(p.suffix == ".eml" for p in files)
    assert any(p.suffix == ".json" for p in files)
    for path in files:
        content = path.read_bytes()
        for secret in secrets:
            assert secret not in content, f"{path} holds the password"
    for secret in secrets:
        assert secret.decode() not in err + dry_err
    assert "smtp" in err, "--debug-smtp logged the conversation"


def test_report_path_may_use_the_run_date(tmp_path, smtp_server, ca_file, password_env):
    path = make_job(tmp_path, smtp_server, ca_file,
                    JOB + '    report: "reports/{{ today }}/sales-{{ iso_week }}"\n', FILES)
    now = dt.datetime(2024, 3, 4, 9, 30, tzinfo=dt.UTC)

    report = run(load_job(path), RunOptions(now=now))

    assert report.json_path == tmp_path / "reports" / "2024-03-04" / "sales-2024-W10.json"
    assert report.csv_path == report.json_path.with_suffix(".csv")
    data = json.loads(report.json_path.read_text(encoding="utf-8"))
    assert data["batch"] == "2024-03-04"
    assert data["started"] == "2024-03-04T09:30:00+00:00"
    assert [r["address"] for r in data["recipients"]] == ADDRESSES


def entry(index: int, address: str, status: str = "sent") -> Entry:
    return Entry(index, address, status, 250, "OK", f"<{index}@example.org>",
                 [{"name": "a, b.pdf", "size": 3, "type": "application/pdf"}], 1,
                 "2024-03-04T09:30:00.000+00:00")


def empty_report(tmp_path) -> Report:
    return Report(job="job", job_file="job.yaml", batch="b", resumed=False, dry_run=False,
                  started="s", finished="f", server={"host": "h", "username": "u"},
                  counts={"sent": 2}, json_path=tmp_path / "r.json", csv_path=tmp_path / "r.csv")


def test_write_report_keeps_the_previous_report_when_writing_fails_midway(tmp_path):
    report = empty_report(tmp_path)
    write_report(report, lambda: [entry(0, "a@example.org"), entry(1, "b@example.org")])
    before = (report.json_path.read_bytes(), report.csv_path.read_bytes())

    def broken():
        yield entry(0, "a@example.org", "refused")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_report(report, broken)

    assert (report.json_path.read_bytes(), report.csv_path.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json"]


def test_write_report_quotes_awkward_values_in_valid_json_and_csv(tmp_path):
    report = empty_report(tmp_path)
    odd = Entry(0, "a@example.org", "failed", None, 'say "no",\nthen ünïcode', "", [], 0, "t")

    write_report(report, lambda: [odd])

    data = json.loads(report.json_path.read_text(encoding="utf-8"))
    assert data["recipients"][0]["message"] == 'say "no",\nthen ünïcode'
    assert data["recipients"][0]["code"] is None
    with report.csv_path.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert rows[0]["message"] == 'say "no",\nthen ünïcode'
    assert rows[0]["code"] == ""


def test_every_envelope_address_is_in_the_report_row_by_header(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    """A recipient field holding two addresses gives two copies: the report shows both."""
    job = make_job(tmp_path, smtp_server, ca_file, """
    from: reports@example.org
    subject: Figures
    text: "Hi\\n"
    cc: "{{ assistants }}"
    bcc: ["audit@example.org", '"Archive, Sales" <archive@example.org>']
    recipients: people.csv
    """, {"people.csv": 'email,name,assistants\nanne@example.org,Anne,"a1@example.org, '
                        '""Smith, B"" <a2@example.org>"\nbob@example.org,Bob,\n'})

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_OK, err
    assert [m.rcpt_tos for m in smtp_server.messages] == [
        ["anne@example.org", "a1@example.org", "a2@example.org", "audit@example.org",
         "archive@example.org"],
        ["bob@example.org", "audit@example.org", "archive@example.org"]]
    report, rows = read_report(tmp_path)
    anne, bob = report["recipients"]
    assert (anne["to"], anne["cc"], anne["bcc"]) == (
        ["anne@example.org"], ["a1@example.org", "a2@example.org"],
        ["audit@example.org", "archive@example.org"])
    assert (bob["to"], bob["cc"]) == (["bob@example.org"], [])
    assert (rows[0]["to"], rows[0]["cc"], rows[0]["bcc"]) == (
        "anne@example.org", "a1@example.org, a2@example.org",
        "audit@example.org, archive@example.org")


def test_a_journal_written_before_the_envelope_column_is_upgraded_in_place(tmp_path):
    import sqlite3

    from mailbatch.batch.journal import Journal

    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE batches (batch TEXT PRIMARY KEY, base TEXT NOT NULL, created TEXT NOT NULL);
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE deliveries (batch TEXT NOT NULL, key TEXT NOT NULL, idx INTEGER NOT NULL,
            address TEXT NOT NULL, status TEXT NOT NULL, code INTEGER,
            message TEXT NOT NULL DEFAULT '', message_id TEXT NOT NULL DEFAULT '',
            attachments TEXT NOT NULL DEFAULT '[]', attempts INTEGER NOT NULL DEFAULT 0,
            updated TEXT NOT NULL, PRIMARY KEY (batch, key));
        INSERT INTO deliveries VALUES ('b', 'old@example.org', 0, 'old@example.org', 'sent',
            250, 'OK', '<1@x>', '[]', 1, 't');
    """)
    old.close()

    with Journal(path) as journal:
        journal.register("b", "new@example.org", 1, "new@example.org", "<2@x>", [],
                         {"to": ["new@example.org"], "cc": [], "bcc": ["c@example.org"]})
        old_row, new_row = journal.entries("b")

    assert old_row.envelope == {} and old_row.status == "sent"
    assert new_row.envelope == {"to": ["new@example.org"], "cc": [], "bcc": ["c@example.org"]}


@pytest.mark.parametrize(("umask", "mode"), [(0o077, 0o600), (0o022, 0o644)])
def test_report_files_are_as_private_as_the_umask_says(tmp_path, umask, mode):
    """The scheduler's systemd unit sets UMask=0077 so reports (addresses, replies) stay private."""
    folder = tmp_path / "job"
    subprocess.run([sys.executable, "-m", "mailbatch", "init", "-q", str(folder)], check=True)
    subprocess.run([sys.executable, "-m", "mailbatch", "run", "-q", "--dry-run",
                    str(folder / "job.yaml")], check=True, preexec_fn=lambda: os.umask(umask))
    reports = list((folder / "reports").iterdir())
    assert len(reports) == 2
    assert {report.stat().st_mode & 0o777 for report in reports} == {mode}


PLACES = [("report: /", "it names a folder"), ("report: reports/", "it names a folder"),
          ("report: \"reports/{{ '' }}..\"", "it names a folder"),
          ("report: \"{{ '' }}\"", "it is empty"), ("outbox: \"{{ '  ' }}\"", "it is empty")]


@pytest.mark.parametrize(("setting", "expect", "command"), [
    (setting, expect, command) for setting, expect in PLACES
    for command in ("check", "run --dry-run", "run")
    if not (setting.startswith("outbox") and command == "run")])  # a real run has no outbox
def test_a_report_or_outbox_that_renders_to_no_file_name_is_refused_before_sending(
        tmp_path, smtp_server, ca_file, password_env, capsys, setting, expect, command):
    job = make_job(tmp_path, smtp_server, ca_file, JOB + setting + "\n", FILES)
    capsys.readouterr()
    code = main([*command.split(), str(job)])
    err = capsys.readouterr().err
    assert code == 78, err
    assert expect in err and "not a usable path" in err
    assert smtp_server.messages == []


def test_a_folder_where_the_report_goes_stops_the_run_before_anything_is_sent(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, JOB + "report: out/r\n", FILES)
    (tmp_path / "out" / "r.csv").mkdir(parents=True)
    code, err = run_cli(capsys, str(job))
    assert code == 74, err
    assert "a folder of that name is in the way" in err and "nothing was sent" in err
    assert smtp_server.messages == []


def test_a_report_that_cannot_be_renamed_into_place_is_a_state_error(tmp_path):
    report = empty_report(tmp_path)
    report.csv_path.mkdir()
    with pytest.raises(StateError, match="cannot write"):
        write_report(report, lambda: [entry(0, "a@example.org")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]
