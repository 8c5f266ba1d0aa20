"""`mailbatch run` against the real server: one session per batch, refusals, session errors."""

from __future__ import annotations

import pytest

from mailbatch import RunOptions, load_job, run
from mailbatch.errors import EXIT_NOPERM, EXIT_OK, EXIT_PARTIAL, EXIT_UNAVAILABLE
from tests.helpers import PASSWORD_ENV
from tests.pipeline import SENDER, SENDER_ADDRESS, closed_port, make_job, read_report, run_cli
from tests.smtpserver import PASSWORD

ADDRESSES = [f"manager{i}@example.org" for i in range(1, 8)]


def people_csv(addresses: list[str]) -> str:
    return "email,name,region\n" + "".join(
        f"{a},Manager {i},region{i}\n" for i, a in enumerate(addresses, start=1))


BODY = f"""
    from: "{SENDER}"
    subject: "Figures for {{{{ region }}}}"
    text: "Hello {{{{ name }}}}, here are the figures for {{{{ region }}}}.\\n"
    recipients: people.csv
"""


def test_batch_of_n_recipients_arrives_as_n_messages_over_one_connection_and_one_login(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, BODY, {"people.csv": people_csv(ADDRESSES)})

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_OK, err
    assert smtp_server.connections == 1
    assert smtp_server.logins == 1
    assert smtp_server.failed_logins == 0
    received = smtp_server.messages
    assert [m.rcpt_tos for m in received] == [[a] for a in ADDRESSES]
    assert {m.mail_from for m in received} == {SENDER_ADDRESS}
    assert {m.connection for m in received} == {1}
    for i, message in enumerate(received, start=1):
        assert message.message["Subject"] == f"Figures for region{i}"
    batch = read_report(tmp_path)[0]["batch"]
    report_path = tmp_path / "reports" / f"job-{batch}.json"
    assert err.strip().splitlines() == [
        f"job: batch {batch}: {len(ADDRESSES)} sent; report: {report_path}"]


def test_library_run_returns_a_report_of_the_same_batch(tmp_path, smtp_server, ca_file,
                                                        password_env):
    job = make_job(tmp_path, smtp_server, ca_file, BODY, {"people.csv": people_csv(ADDRESSES)})

    report = run(load_job(job), RunOptions())

    assert report.counts["sent"] == len(ADDRESSES)
    assert report.total == len(ADDRESSES)
    assert report.json_path is not None and report.json_path.is_file()
    assert len(smtp_server.messages) == len(ADDRESSES)


def test_recipient_refused_with_550_is_refused_in_the_report_while_the_others_are_sent(
        tmp_path, smtp_server_factory, ca_file, password_env, capsys):
    server = smtp_server_factory(reject_pattern=r"^manager3@")
    job = make_job(tmp_path, server, ca_file, BODY, {"people.csv": people_csv(ADDRESSES[:5])})

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_PARTIAL
    assert [m.rcpt_tos for m in server.messages] == [[a] for a in ADDRESSES[:5] if
                                                     a != "manager3@example.org"]
    assert server.connections == 1 and server.logins == 1
    report, _ = read_report(tmp_path)
    assert {r["address"]: r["status"] for r in report["recipients"]} == {
        a: "refused" if a == "manager3@example.org" else "sent" for a in ADDRESSES[:5]}
    refused = next(r for r in report["recipients"] if r["status"] == "refused")
    assert refused["code"] == 550
    assert "User unknown" in refused["message"]
    assert report["counts"]["sent"] == 4 and report["counts"]["refused"] == 1
    assert "4 sent, 1 refused" in err
    assert "Traceback" not in err


def test_wrong_password_sends_nothing_and_exits_77_with_one_line(
        tmp_path, smtp_server, ca_file, monkeypatch, capsys):
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    job = make_job(tmp_path, smtp_server, ca_file, BODY, {"people.csv": people_csv(ADDRESSES)})

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_NOPERM == 77
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mailbatch: error: login refused by 127.0.0.1 for mailer: 535 ")
    assert "not-the-password" not in err
    assert smtp_server.messages == []
    assert smtp_server.logins == 0
    assert smtp_server.connections == 1


def test_untrusted_certificate_sends_nothing_and_exits_69_naming_the_certificate(
        tmp_path, smtp_server, password_env, capsys):
    job = make_job(tmp_path, smtp_server, None, BODY, {"people.csv": people_csv(ADDRESSES)})

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_UNAVAILABLE == 69
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"mailbatch: error: 127.0.0.1:{smtp_server.port}: ")
    assert "certificate" in lines[0] and "ca_file" in lines[0]
    assert smtp_server.messages == []
    assert smtp_server.logins == 0


def test_connection_refused_on_a_closed_port_exits_69(tmp_path, smtp_server, ca_file,
                                                      password_env, capsys):
    port = closed_port()
    job = make_job(tmp_path, smtp_server, ca_file, BODY, {"people.csv": people_csv(ADDRESSES)},
                   port=port)

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_UNAVAILABLE
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"mailbatch: error: 127.0.0.1:{port}: cannot connect")
    assert "refused" in lines[0]


@pytest.mark.parametrize("cause", ["wrong password", "untrusted certificate"])
def test_session_errors_write_no_report_and_leave_no_temporary_files(
        tmp_path, smtp_server, ca_file, monkeypatch, capsys, cause):
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password" if cause == "wrong password"
                       else PASSWORD)
    trusted = ca_file if cause == "wrong password" else None
    job = make_job(tmp_path, smtp_server, trusted, BODY, {"people.csv": people_csv(ADDRESSES)})

    code, _ = run_cli(capsys, str(job))

    assert code == (EXIT_NOPERM if cause == "wrong password" else EXIT_UNAVAILABLE)
    assert smtp_server.messages == []
    assert not (tmp_path / "reports").exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
