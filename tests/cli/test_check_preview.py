"""`mailbatch check` and `mailbatch preview`: see the whole batch, or one message, before
anything reaches a recipient."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from mailbatch.cli.check import check
from mailbatch.cli.main import main
from mailbatch.cli.preview import preview
from mailbatch.job.model import load_job
from tests.helpers import PASSWORD_ENV, smtp_block, write_job
from tests.smtpserver import PASSWORD

JOB = """
    from: "Sales Reports <reports@example.org>"
    subject: "Weekly sales for {{ region | title }} - {{ name }}"
    text_template: templates/body.txt.j2
    html_template: templates/body.html.j2
    cc: "Sales Lead <lead@example.org>"
    bcc: "archive@example.org"
    recipients: managers.csv
    attachments:
      - "reports/{{ region }}/*.pdf"
      - pattern: "shared/terms.txt"
        optional: true
"""
FILES = {
    "managers.csv": "email,name,region\n"
                    "ana@example.org,Ana Silva,north\n"
                    "bjorn@example.org,Bjørn Larsen,south\n"
                    "chloe@example.org,Chloé Martin,west\n",
    "templates/body.txt.j2": "Hello {{ name }},\nyour region: {{ region }}.\n",
    "templates/body.html.j2": "<p>Hello <b>{{ name }}</b></p>\n",
    "reports/north/north.pdf": b"%PDF-1.4 north" * 100,
    "reports/south/south-1.pdf": b"%PDF-1.4 south one",
    "reports/south/south-2.pdf": b"%PDF-1.4 south two",
    "reports/west/west.pdf": b"%PDF-1.4 west",
    "shared/terms.txt": "terms and conditions\n",
}


@pytest.fixture
def job_path(smtp_server, ca_file, tmp_path) -> Path:
    return write_job(tmp_path, JOB + smtp_block(smtp_server, ca_file), FILES)


# -- check -------------------------------------------------------------------------------------


def test_check_summarises_recipients_attachments_and_size_and_sends_nothing(
        job_path, smtp_server, tmp_path, capsys):
    assert main(["check", str(job_path)]) == 0

    out = capsys.readouterr().out
    assert f"{job_path}: OK, nothing sent: 3 recipient(s)" in out
    assert "attachments: 2 to 3 per recipient (7 in all), 5 distinct file(s)" in out
    assert "in 3 message(s); largest" in out and "(to ana@example.org)" in out
    assert f"password from environment variable {PASSWORD_ENV}" in out
    assert smtp_server.connections == 0 and smtp_server.messages == []
    assert not (tmp_path / ".mailbatch").exists()  # no journal
    assert not (tmp_path / "reports").joinpath("job").exists()
    assert not (tmp_path / "outbox").exists()
    assert not list(tmp_path.glob("reports/*.json"))


def test_check_counts_the_bytes_that_would_go_over_the_wire(job_path):
    summary = check(load_job(job_path))

    assert summary.recipients == 3
    assert (summary.attachments_min, summary.attachments_max) == (2, 3)
    assert summary.attachment_bytes == sum(len(v) for k, v in FILES.items()
                                           if k.startswith(("reports/", "shared/")))
    assert summary.total_bytes > 4 * summary.attachment_bytes / 3  # base64 and headers
    assert summary.largest_to == "ana@example.org"


def test_check_connect_logs_in_once_and_sends_nothing(
        job_path, smtp_server, password_env, capsys):
    assert main(["check", "--connect", str(job_path)]) == 0

    assert "login:       OK, logged in and quit (messages up to 32.0 MB)" in \
        capsys.readouterr().out
    assert smtp_server.connections == 1
    assert smtp_server.logins == 1
    assert smtp_server.messages == []


def test_check_connect_with_a_wrong_password_exits_77(
        job_path, smtp_server, monkeypatch, capsys):
    monkeypatch.setenv(PASSWORD_ENV, "wrong")

    assert main(["check", "--connect", str(job_path)]) == 77

    assert "login refused by 127.0.0.1 for mailer: 535" in capsys.readouterr().err
    assert smtp_server.logins == 0 and smtp_server.messages == []


def test_check_without_connect_notes_a_password_not_set_yet_without_warning(
        job_path, monkeypatch, capsys):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)

    assert main(["check", str(job_path)]) == 0

    out, err = capsys.readouterr()
    assert "warning" not in err  # right after init, nobody has a server yet: no noise
    assert (f"password from environment variable {PASSWORD_ENV} (not set in this shell: run "
            "and check --connect need it)") in out


def test_check_connect_says_a_password_variable_is_not_set(job_path, monkeypatch, capsys):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)

    assert main(["check", "--connect", str(job_path)]) == 78

    assert f"environment variable {PASSWORD_ENV} is not set" in capsys.readouterr().err


def test_check_warns_when_a_message_is_over_the_servers_size_limit(
        smtp_server_factory, ca_file, tmp_path, password_env, capsys):
    server = smtp_server_factory(data_size_limit=2000)
    job = write_job(tmp_path, JOB + smtp_block(server, ca_file), FILES)

    assert main(["check", "--connect", str(job)]) == 0

    err = capsys.readouterr().err
    assert "to ana@example.org) is over the server's SIZE limit of 2000 bytes" in err


def test_check_reports_every_broken_message_not_just_the_first(job_path, tmp_path, capsys):
    (tmp_path / "reports/south/south-1.pdf").unlink()
    (tmp_path / "reports/south/south-2.pdf").unlink()
    (tmp_path / "managers.csv").write_text(FILES["managers.csv"] + "dan(at)example.org,Dan,north\n")

    assert main(["check", str(job_path)]) == 65

    err = capsys.readouterr().err
    assert "2 message(s) could not be rendered; nothing was sent" in err
    assert "managers.csv:3 (bjorn@example.org)" in err and "matches no file" in err
    assert "managers.csv:5 (dan(at)example.org)" in err and "not a valid email address" in err


def test_check_verbose_lists_each_recipient_with_size_and_files(job_path, capsys):
    assert main(["check", "-v", str(job_path)]) == 0

    err = capsys.readouterr().err
    assert "bjorn@example.org:" in err and "south-1.pdf, south-2.pdf, terms.txt" in err


def test_check_notes_an_address_field_that_gives_more_addresses_than_its_template_names(
        smtp_server, ca_file, tmp_path, capsys):
    """A recipient field holding "a@x, b@y" sends a copy to each: allowed, and shown."""
    job = write_job(tmp_path, JOB.replace('cc: "Sales Lead <lead@example.org>"',
                                          'cc: ["Sales Lead <lead@example.org>", '
                                          '"{{ deputy }}"]')
                    + smtp_block(smtp_server, ca_file), {
        **FILES, "managers.csv": "email,name,region,deputy\n"
                                 "ana@example.org,Ana,north,d1@example.org\n"
                                 'bjorn@example.org,Bjørn,south,"d2@example.org, '
                                 '""Ops, Team"" <ops@example.org>"\n'
                                 "chloe@example.org,Chloé,west,\n"})

    assert main(["check", str(job)]) == 0

    out = capsys.readouterr().out
    assert ("  note:        cc[1] gives more addresses than its template names (1) for 1 "
            "recipient(s), e.g. bjorn@example.org: d2@example.org, ops@example.org; each "
            "address gets the message") in out
    assert out.count("note:") == 1


def test_check_quiet_prints_nothing_when_all_is_well(job_path, password_env, capsys):
    assert main(["check", "-q", str(job_path)]) == 0

    assert capsys.readouterr() == ("", "")


# -- preview -----------------------------------------------------------------------------------


def test_preview_shows_the_first_message_headers_body_and_attachments(
        job_path, smtp_server, capsys):
    assert main(["preview", str(job_path)]) == 0

    out = capsys.readouterr().out
    assert out.startswith("# message 1 of 3 (")
    assert "From: Sales Reports <reports@example.org>\n" in out
    assert "To: Ana Silva <ana@example.org>\n" in out
    assert "Cc: Sales Lead <lead@example.org>\n" in out
    assert "Subject: Weekly sales for North - Ana Silva\n" in out
    assert "Message-ID: <" in out and "Date: " in out
    assert "(Bcc, envelope only: archive@example.org)" in out
    assert "(delivered to: ana@example.org, lead@example.org, archive@example.org)" in out
    assert "Hello Ana Silva,\nyour region: north.\n" in out
    assert "# 2 attachment(s):" in out
    assert "  north.pdf  application/pdf  1.4 KB" in out and "terms.txt  text/plain" in out
    assert "write it with --html-out FILE" in out
    assert smtp_server.connections == 0


@pytest.mark.parametrize("which", ["2", "bjorn@example.org", "BJORN@Example.ORG"])
def test_preview_picks_a_recipient_by_position_or_address(job_path, which, capsys):
    assert main(["preview", str(job_path), "--recipient", which]) == 0

    out = capsys.readouterr().out
    assert out.startswith("# message 2 of 3 (")
    assert "managers.csv:3" in out.splitlines()[0]
    assert "Subject: Weekly sales for South - Bjørn Larsen\n" in out
    assert "south-1.pdf" in out and "south-2.pdf" in out


def test_preview_writes_the_html_body_to_a_file(job_path, tmp_path, capsys):
    target = tmp_path / "out" / "preview.html"
    target.parent.mkdir()

    assert main(["preview", str(job_path), "-r", "3", "--html-out", str(target)]) == 0

    assert target.read_text(encoding="utf-8") == "<p>Hello <b>Chloé Martin</b></p>\n"
    assert f"# HTML body written to {target}" in capsys.readouterr().out


def test_preview_html_out_without_an_html_body_is_an_error(
        smtp_server, ca_file, tmp_path, capsys):
    job = write_job(tmp_path, JOB.replace("    html_template: templates/body.html.j2\n", "")
                    + smtp_block(smtp_server, ca_file), FILES)

    assert main(["preview", str(job), "--html-out", str(tmp_path / "x.html")]) == 2

    assert "this job has no HTML body" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_preview_needs_no_password_and_no_server(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    job = write_job(tmp_path, JOB + f"smtp: {{host: 127.0.0.1, port: 1, username: u, "
                    f"password_env: {PASSWORD_ENV}}}\n", FILES)

    assert main(["preview", str(job)]) == 0


def test_preview_shows_names_as_a_mail_reader_does(smtp_server, ca_file, tmp_path, capsys):
    """Long names are split into several encoded-words; Python's parser would show a space
    at each split (CPython gh-128110), a mail reader does not."""
    long_name = "Bérénice-Amélie Rosémonde Dûbois-Bénard Lüdenscheidt-Müller"
    job = write_job(tmp_path, JOB.replace('cc: "Sales Lead <lead@example.org>"',
                                          "cc: '\"Smith (Sales), =?utf-8?q?x?=\" "
                                          "<s@example.org>'")
                    + smtp_block(smtp_server, ca_file), {
        **FILES, "managers.csv": f"email,name,region\nana@example.org,{long_name},north\n"})

    assert main(["preview", str(job)]) == 0

    out = capsys.readouterr().out
    assert f"To: {long_name} <ana@example.org>\n" in out
    assert 'Cc: "Smith (Sales), =?utf-8?q?x?=" <s@example.org>\n' in out


def test_preview_shows_exactly_the_message_a_run_sends(job_path, smtp_server, password_env):
    shown = preview(load_job(job_path), "3")

    assert main(["run", str(job_path)]) == 0

    sent = next(m for m in smtp_server.messages if "chloe@example.org" in m.rcpt_tos)
    parsed = email.message_from_bytes(sent.data, policy=email.policy.default)
    headers = {name: value for name, value in shown.headers if name != "Date"}
    assert headers == {name: str(value) for name, value in parsed.items()
                       if name not in ("Date", "MIME-Version", "Content-Type",
                                       "Content-Transfer-Encoding")}
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == shown.text
    assert [p.get_filename() for p in parsed.iter_attachments()] == \
        [a.filename for a in shown.attachments]
    assert sorted(sent.rcpt_tos) == sorted(shown.envelope)
    assert PASSWORD not in str(shown)


def test_check_warns_about_a_password_file_others_can_read_without_reading_it(
        smtp_server, ca_file, tmp_path, capsys):
    job = write_job(tmp_path, JOB + smtp_block(smtp_server, ca_file, password_env=None,
                                               password_file="pw.txt"), FILES)
    (tmp_path / "pw.txt").write_text(PASSWORD)
    (tmp_path / "pw.txt").chmod(0o644)

    assert main(["check", str(job)]) == 0

    out, err = capsys.readouterr()
    assert f"password from file {tmp_path / 'pw.txt'}" in out
    assert f"mailbatch: warning: password: {tmp_path / 'pw.txt'} is readable by group or " \
           f"others; run: chmod 600 {tmp_path / 'pw.txt'}" in err
    assert PASSWORD not in out + err


def test_check_warns_when_the_state_dir_cannot_be_made_and_leaves_nothing_behind(
        smtp_server, ca_file, tmp_path, password_env, capsys):
    (tmp_path / "taken").write_text("a file where the state folder would go")
    job = write_job(tmp_path, JOB + "state_dir: taken/state\n" + smtp_block(smtp_server, ca_file),
                    FILES)
    before = sorted(p.name for p in tmp_path.iterdir())

    assert main(["check", str(job)]) == 0

    err = capsys.readouterr().err
    assert f"mailbatch: warning: state_dir: {tmp_path / 'taken'} is a file, not a folder; " \
           "'mailbatch run' would stop there (exit 74)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert main(["run", str(job)]) == 74
