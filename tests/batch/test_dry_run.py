"""`--dry-run`: the same messages as a real send, written to the outbox; no password, no network."""

from __future__ import annotations

import os
import socket

import pytest

from mailbatch import RunOptions, load_job, run
from mailbatch.errors import EXIT_DATA, EXIT_OK
from tests.helpers import PASSWORD_ENV
from tests.pipeline import make_job, offline_job, outline, parse, read_report, run_cli
from tests.smtpserver import PASSWORD

JOB = """
    from: "Sales Reports <reports@example.org>"
    subject: "Figures for {{ name }}"
    text: "Hello {{ name }}, totals for {{ region }}.\\n"
    html: "<p>Hello {{ name }}, totals for <b>{{ region }}</b>.</p>\\n"
    cc: head@example.org
    bcc: audit@example.org
    recipients: people.csv
    attachments: ["files/{{ region }}/*"]
"""
FILES = {
    "people.csv": "email,name,region\nanne@example.org,Änne,north\nbob@example.org,Bob,south\n"
                  "carl@example.org,Carl,north\n",
    "files/north/north.pdf": b"%PDF north",
    "files/north/Zahlen ü.csv": b"a;b\n1;2\n",
    "files/south/south.pdf": b"%PDF south",
}


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a dry run tried to connect: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def outbox_files(folder):
    return sorted((folder / "outbox").rglob("*.eml"))


def test_dry_run_writes_eml_files_that_parse_back_to_the_messages_a_real_send_delivers(
        tmp_path, smtp_server, ca_file, monkeypatch, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, JOB, FILES)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    code, err = run_cli(capsys, "--dry-run", str(job))
    assert code == EXIT_OK, err
    assert smtp_server.connections == 0

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    code, err = run_cli(capsys, str(job))
    assert code == EXIT_OK, err

    dry = [outline(parse(path.read_bytes())) for path in outbox_files(tmp_path)]
    real = [outline(parse(message.data)) for message in smtp_server.messages]
    assert len(dry) == 3
    assert dry == real
    assert dry[0]["attachments"] == [("Zahlen ü.csv", "text/csv", b"a;b\n1;2\n"),
                                     ("north.pdf", "application/pdf", b"%PDF north")]
    assert all("Bcc" not in parse(path.read_bytes()) for path in outbox_files(tmp_path))


def test_dry_run_needs_no_password_and_no_network(tmp_path, monkeypatch, no_network, capsys):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    job = offline_job(tmp_path, JOB, FILES)

    code, err = run_cli(capsys, "--dry-run", str(job))

    assert code == EXIT_OK, err
    names = [path.name for path in outbox_files(tmp_path)]
    assert names == ["000001-anne@example.org.eml", "000002-bob@example.org.eml",
                     "000003-carl@example.org.eml"]
    report, rows = read_report(tmp_path, dry_run=True)
    assert [r["status"] for r in report["recipients"]] == ["dry-run"] * 3
    assert [r["status"] for r in rows] == ["dry-run"] * 3
    assert report["dry_run"] is True
    assert report["counts"]["dry-run"] == 3
    outbox = outbox_files(tmp_path)[0].parent
    assert f"3 messages written to {outbox}{os.sep}; report: " in err  # where to look next
    assert report["outbox"] == str(outbox)


def test_dry_run_does_not_count_as_sending(tmp_path, smtp_server, ca_file, password_env,
                                           capsys):
    job = make_job(tmp_path, smtp_server, ca_file, JOB, FILES)

    assert run_cli(capsys, "--dry-run", str(job))[0] == EXIT_OK
    code, err = run_cli(capsys, str(job))

    assert code == EXIT_OK, err
    assert len(smtp_server.messages) == 3
    assert read_report(tmp_path)[0]["counts"]["sent"] == 3


def test_dry_run_after_a_real_send_keeps_the_real_delivery_report(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, JOB, FILES)
    assert run_cli(capsys, str(job))[0] == EXIT_OK

    assert run_cli(capsys, "--dry-run", str(job))[0] == EXIT_OK

    assert [r["status"] for r in read_report(tmp_path)[0]["recipients"]] == ["sent"] * 3
    assert [r["status"] for r in read_report(tmp_path, dry_run=True)[0]["recipients"]] == [
        "dry-run"] * 3


def test_dry_run_with_a_render_error_writes_nothing(tmp_path, monkeypatch, no_network, capsys):
    files = {**FILES, "people.csv": FILES["people.csv"] + "dora@example.org,Dora,east\n"}
    job = offline_job(tmp_path, JOB, files)

    code, err = run_cli(capsys, "--dry-run", str(job))

    assert code == EXIT_DATA
    assert "dora@example.org" in err
    assert outbox_files(tmp_path) == []
    assert not (tmp_path / "reports").exists()


def test_dry_run_through_the_library_returns_a_dry_run_report(tmp_path, monkeypatch,
                                                              no_network):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    job = load_job(offline_job(tmp_path, JOB, FILES))

    report = run(job, RunOptions(dry_run=True))

    assert report.dry_run
    assert report.counts["dry-run"] == 3
    assert report.summary().startswith(f"job: dry run {report.batch}: 3 messages written to ")
    assert not (tmp_path / ".mailbatch").exists(), "a dry run keeps no journal of its own"
