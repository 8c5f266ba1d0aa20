"""Security defaults: TLS that cannot be weakened silently, secrets that never leak, recipient
data that is only ever data."""

from __future__ import annotations

import base64
import getpass
import io
import logging
import os
import ssl
import sys

import pytest

from mailbatch.cli.main import main
from mailbatch.smtp.session import _SMTP_SSL
from tests.helpers import PASSWORD_ENV, smtp_block, write_job
from tests.smtpserver import OAUTH2_TOKEN, PASSWORD, USERNAME

BODY = """
from: "Reports <reports@example.org>"
subject: "Report for {{ name }}"
text: "Hello {{ name }}"
html: "<p>Hello {{ name }}</p>"
recipients:
  - {email: ann@example.org, name: Ann}
  - {email: bob@example.org, name: Bob}
"""


def encodings(secret: str) -> list[str]:
    """Every form in which a secret could travel in an SMTP AUTH exchange."""
    plain = f"\0{USERNAME}\0{secret}"
    oauth = f"user={USERNAME}\x01auth=Bearer {secret}\x01\x01"
    return [secret, *(base64.b64encode(s.encode()).decode() for s in (secret, plain, oauth))]


def assert_no_secret(text: str, secret: str) -> None:
    for form in encodings(secret):
        assert form not in text, f"secret leaked as {form!r}"


# -- --debug-smtp ------------------------------------------------------------------------------


def test_debug_smtp_shows_the_conversation_with_auth_plain_redacted(
        smtp_server, ca_file, tmp_path, password_env, capsys):
    job = write_job(tmp_path, smtp_block(smtp_server, ca_file) + BODY)

    assert main(["run", "--debug-smtp", str(job)]) == 0

    err = capsys.readouterr().err
    assert "smtp send: 'AUTH PLAIN [redacted]'" in err
    assert "smtp send: 'ehlo" in err and "MAIL FROM:<reports@example.org>" in err
    assert_no_secret(err, PASSWORD)
    assert len(smtp_server.messages) == 2


def test_debug_smtp_logs_message_content_as_its_size_not_its_text(
        smtp_server, ca_file, tmp_path, password_env, capsys):
    job = write_job(tmp_path, smtp_block(smtp_server, ca_file) + BODY)

    assert main(["run", "--debug-smtp", str(job)]) == 0

    err = capsys.readouterr().err
    assert "Hello Ann" not in err and "Report for Ann" not in err
    assert err.count("smtp send: [message content: ") == 2
    assert err.count("smtp send: [the end of DATA]") == 2
    assert "smtp reply: b'250" in err  # the server's answers are still shown
    assert all(b"Hello" in m.data for m in smtp_server.messages)


def test_debug_smtp_redacts_auth_login_username_and_password_lines(
        smtp_server, ca_file, tmp_path, monkeypatch, capsys):
    """smtplib falls back from PLAIN to LOGIN when PLAIN is refused; LOGIN sends the password
    as a base64 line of its own, after the server's 334 challenge."""
    monkeypatch.setenv(PASSWORD_ENV, "wrong-Pa55word")
    job = write_job(tmp_path, smtp_block(smtp_server, ca_file) + BODY)

    assert main(["check", "--connect", "--debug-smtp", str(job)]) == 77

    err = capsys.readouterr().err
    assert "smtp send: 'AUTH PLAIN [redacted]'" in err
    assert "smtp send: 'AUTH LOGIN [redacted]'" in err
    assert "smtp send: '[redacted]'" in err  # the password line after 334
    assert_no_secret(err, "wrong-Pa55word")
    assert base64.b64encode(USERNAME.encode()).decode() not in err


def test_successful_auth_login_is_redacted_too(smtp_server, ca_file, caplog):
    context = ssl.create_default_context(cafile=str(ca_file))
    caplog.set_level(logging.DEBUG, logger="mailbatch.smtp.session")
    with _SMTP_SSL(smtp_server.host, smtp_server.port, context=context, timeout=5) as smtp:
        smtp.set_debuglevel(1)
        smtp.ehlo()
        smtp.user, smtp.password = USERNAME, PASSWORD
        code, _ = smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
        smtp.noop()

    assert code == 235 and smtp_server.login_mechanisms == ["LOGIN"]
    lines = [r.getMessage() for r in caplog.records if r.name == "mailbatch.smtp.session"]
    assert "smtp send: 'AUTH LOGIN [redacted]'" in lines
    assert lines.count("smtp send: '[redacted]'") == 2  # username, then password
    assert any(line.startswith("smtp send: 'noop") for line in lines)  # redaction ended
    assert_no_secret("\n".join(lines), PASSWORD)


def test_debug_smtp_redacts_the_xoauth2_token(smtp_server, ca_file, tmp_path, capsys):
    command = [sys.executable, "-c", f"print({OAUTH2_TOKEN!r})"]
    job = write_job(tmp_path, smtp_block(smtp_server, ca_file, password_env=None,
                                         oauth2_token_command=command) + BODY)

    assert main(["check", "--connect", "--debug-smtp", str(job)]) == 0

    err = capsys.readouterr().err
    assert smtp_server.login_mechanisms == ["XOAUTH2"]
    assert "smtp send: 'AUTH XOAUTH2 [redacted]'" in err
    assert_no_secret(err, OAUTH2_TOKEN)


def test_the_password_is_in_no_output_report_journal_or_eml_file(
        smtp_server, ca_file, tmp_path, password_env, capsys):
    job = write_job(tmp_path, smtp_block(smtp_server, ca_file) + BODY)

    assert main(["run", "-vv", "--debug-smtp", str(job)]) == 0
    assert main(["run", "--dry-run", str(job)]) == 0

    out, err = capsys.readouterr()
    assert_no_secret(out + err, PASSWORD)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "job.yaml"]
    assert any(p.suffix == ".eml" for p in written)
    assert any(p.suffix == ".json" for p in written)
    assert any(p.suffix == ".sqlite" for p in written)
    for path in written:
        data = path.read_bytes().decode("latin-1")
        assert_no_secret(data, PASSWORD)


# -- TLS ---------------------------------------------------------------------------------------


def test_verify_certificate_false_warns_on_every_run_even_when_quiet(
        smtp_server, tmp_path, password_env, capsys):
    job = write_job(tmp_path, smtp_block(smtp_server, None, verify_certificate=False) + BODY)

    assert main(["run", str(job)]) == 0
    first = capsys.readouterr().err
    assert main(["run", "-q", "--new-batch", str(job)]) == 0
    second = capsys.readouterr().err
    assert main(["check", "-q", "--connect", str(job)]) == 0
    third = capsys.readouterr().err

    for err in (first, second, third):
        assert err.count("verify_certificate is false") == 1, err
        assert "NOT checked" in err
    assert len(smtp_server.messages) == 4  # it still works, against an untrusted certificate


def test_verification_is_on_by_default_so_an_unknown_ca_is_refused(
        smtp_server, tmp_path, password_env, capsys):
    job = write_job(tmp_path, smtp_block(smtp_server, None) + BODY)

    assert main(["run", str(job)]) == 69

    assert "certificate is not trusted" in capsys.readouterr().err
    assert smtp_server.logins == 0 and smtp_server.failed_logins == 0


def test_starttls_mode_upgrades_before_logging_in(
        smtp_server_factory, ca_file, tmp_path, password_env, capsys):
    server = smtp_server_factory(security="starttls")  # refuses AUTH and MAIL before STARTTLS
    job = write_job(tmp_path, smtp_block(server, ca_file, security="starttls") + BODY)

    assert main(["run", str(job)]) == 0

    assert server.logins == 1 and len(server.messages) == 2


def test_implicit_tls_against_a_server_that_speaks_plain_text_first_says_to_use_starttls(
        smtp_server_factory, ca_file, tmp_path, password_env, capsys):
    server = smtp_server_factory(security="starttls")  # a submission port: 220 in clear
    job = write_job(tmp_path, smtp_block(server, ca_file) + BODY)  # security: tls

    assert main(["run", str(job)]) == 69

    err = capsys.readouterr().err.strip()
    assert "did not answer in TLS" in err and "security: starttls" in err, err
    assert "_ssl.c" not in err and len(err.splitlines()) == 1
    assert server.logins == 0 and server.messages == []


def test_starttls_mode_never_sends_the_password_when_starttls_is_not_offered(
        smtp_server_factory, ca_file, tmp_path, password_env, capsys):
    server = smtp_server_factory(security="plain-no-starttls")  # still offers AUTH in clear
    job = write_job(tmp_path, smtp_block(server, ca_file, security="starttls") + BODY)

    assert main(["run", "--debug-smtp", str(job)]) == 69

    err = capsys.readouterr().err
    assert "does not offer STARTTLS" in err
    assert "AUTH" not in "\n".join(line for line in err.splitlines() if "send:" in line)
    assert server.logins == 0 and server.failed_logins == 0 and server.messages == []


# -- password sources --------------------------------------------------------------------------


def test_password_file_readable_only_by_its_owner_is_used(
        smtp_server, ca_file, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    job = write_job(tmp_path, smtp_block(smtp_server, ca_file, password_env=None,
                                         password_file="secret.txt") + BODY)

    assert main(["run", str(job)]) == 0
    assert smtp_server.logins == 1


def test_password_file_readable_by_its_group_is_refused_without_connecting(
        smtp_server, ca_file, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text(PASSWORD)
    secret.chmod(0o640)
    job = write_job(tmp_path, smtp_block(smtp_server, ca_file, password_env=None,
                                         password_file="secret.txt") + BODY)

    assert main(["run", str(job)]) == 78

    assert f"chmod 600 {secret}" in capsys.readouterr().err
    assert smtp_server.logins == 0 and smtp_server.failed_logins == 0


def test_password_command_output_is_the_password(smtp_server, ca_file, tmp_path, capsys):
    command = f"{sys.executable} -c \"print('{PASSWORD}')\""
    job = write_job(tmp_path, smtp_block(smtp_server, ca_file, password_env=None,
                                         password_command=command) + BODY)

    assert main(["run", str(job)]) == 0
    assert smtp_server.logins == 1


def test_without_a_password_source_and_without_a_terminal_nothing_prompts(
        smtp_server, ca_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": pytest.fail("prompted"))
    job = write_job(tmp_path, smtp_block(smtp_server, ca_file, password_env=None) + BODY)

    assert main(["run", str(job)]) == 78

    assert "no terminal to ask on" in capsys.readouterr().err
    assert smtp_server.logins == 0


def test_on_a_terminal_the_password_is_asked_with_getpass(
        smtp_server, ca_file, tmp_path, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    prompts: list[str] = []
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": prompts.append(prompt) or PASSWORD)
    job = write_job(tmp_path, smtp_block(smtp_server, ca_file, password_env=None) + BODY)

    assert main(["run", str(job)]) == 0

    assert prompts == [f"Password for {USERNAME} at {smtp_server.host}: "]  # asked once
    assert smtp_server.logins == 1


# -- recipient data is data ----------------------------------------------------------------------


def test_recipient_values_are_never_evaluated_as_template_code(
        smtp_server, ca_file, tmp_path, password_env, capsys):
    job = write_job(tmp_path, """
        from: "Reports <reports@example.org>"
        subject: "Report for {{ name }}"
        text: "Hello {{ name }}, {{ note }}"
        html: "<p>Hello {{ name }}</p>"
        recipients:
          - email: ann@example.org
            name: "{{ 7 * 7 }}"
            note: "{% for x in range(3) %}loop{% endfor %} {{ config }}"
        """ + smtp_block(smtp_server, ca_file))

    assert main(["run", str(job)]) == 0

    message = smtp_server.messages[0].message
    assert message["Subject"] == "Report for {{ 7 * 7 }}"
    text = message.get_body(("plain",)).get_content()
    assert "Hello {{ 7 * 7 }}, {% for x in range(3) %}loop{% endfor %} {{ config }}" in text
    assert "49" not in text and "looploop" not in text


def test_recipient_values_are_escaped_in_the_html_body(
        smtp_server, ca_file, tmp_path, password_env, capsys):
    job = write_job(tmp_path, """
        from: "Reports <reports@example.org>"
        subject: "Report"
        text: "Hello {{ name }}"
        html: "<p>Hello {{ name }}</p>"
        recipients:
          - {email: ann@example.org, name: "<script>alert(1)</script>"}
        """ + smtp_block(smtp_server, ca_file))

    assert main(["run", str(job)]) == 0

    message = smtp_server.messages[0].message
    html = message.get_body(("html",)).get_content()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "<script>alert(1)</script>" in message.get_body(("plain",)).get_content()


@pytest.mark.parametrize("field", ["subject", "to", "reply_to", "cc", "header"])
def test_a_line_break_from_recipient_data_in_any_header_sends_nothing(
        field, smtp_server, ca_file, tmp_path, password_env, capsys):
    templates = {"subject": 'subject: "Hi {{ v }}"',
                 "to": 'subject: x\nto: "{{ v }} <{{ email }}>"',
                 "reply_to": 'subject: x\nreply_to: "{{ v }} <r@example.org>"',
                 "cc": 'subject: x\ncc: "{{ v }} <c@example.org>"',
                 "header": 'subject: x\nheaders:\n  X-Team: "{{ v }}"'}
    job = write_job(tmp_path, smtp_block(smtp_server, ca_file) + f"""
from: "Reports <reports@example.org>"
{templates[field]}
text: "Hello"
recipients:
  - {{email: ann@example.org, v: fine}}
  - {{email: bob@example.org, v: "Bob\\r\\nBcc: victim@example.net"}}
""")

    assert main(["run", str(job)]) == 65

    err = capsys.readouterr().err
    assert "(bob@example.org)" in err and "line break" in err
    assert smtp_server.messages == []


def test_an_attachment_symlink_pointing_outside_the_job_folder_is_refused(
        smtp_server, ca_file, tmp_path, password_env, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.pdf").write_bytes(b"%PDF secret")
    folder = tmp_path / "job"
    job = write_job(folder, smtp_block(smtp_server, ca_file) + BODY +
                    'attachments: ["files/*.pdf"]\n', {"files/ok.pdf": b"%PDF"})
    os.symlink(outside / "secret.pdf", folder / "files" / "link.pdf")

    assert main(["run", str(job)]) == 65

    assert "outside the attachments root" in capsys.readouterr().err
    assert smtp_server.messages == []


def test_a_link_to_nothing_among_the_attachments_is_no_file_not_a_file_outside_the_root(
        tmp_path):
    from mailbatch.message.attachments import AttachmentProblem, find

    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "ok.pdf").write_bytes(b"%PDF")
    os.symlink("/nonexistent/p.pdf", tmp_path / "files" / "gone.pdf")

    assert [a.filename for a in find("files/*.pdf", tmp_path)] == ["ok.pdf"]
    assert find("files/gone.pdf", tmp_path) == []  # "matches no file", said by the renderer
    with pytest.raises(AttachmentProblem, match="outside the attachments root"):
        os.symlink("/etc/hostname", tmp_path / "files" / "out.pdf")
        find("files/*.pdf", tmp_path)


def test_attachments_root_allows_a_folder_outside_the_job_folder_on_purpose(
        smtp_server, ca_file, tmp_path, password_env, capsys):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "terms.txt").write_text("terms")
    (tmp_path / "job").mkdir()
    job = write_job(tmp_path / "job", smtp_block(smtp_server, ca_file) + BODY +
                    f'attachments_root: "{shared}"\nattachments: ["terms.txt"]\n')

    assert main(["run", str(job)]) == 0

    names = [part.get_filename() for part in smtp_server.messages[0].message.iter_attachments()]
    assert names == ["terms.txt"]


def test_preview_shows_control_characters_from_recipient_data_escaped(
        smtp_server, ca_file, tmp_path, capsys):
    job = write_job(tmp_path, """
        from: "Reports <reports@example.org>"
        to: "{{ recipient_address }}"
        subject: "Report for {{ name }}"
        text: "Hello {{ name }}"
        recipients:
          - {email: ann@example.org, name: "Ann\\e[2J\\e]0;owned\\a"}
        """ + smtp_block(smtp_server, ca_file))

    assert main(["preview", str(job)]) == 0

    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "Hello Ann\\x1b[2J\\x1b]0;owned\\x07" in out
    assert "Subject: Report for Ann\\x1b[2J\\x1b]0;owned\\x07" in out


def test_a_display_name_with_a_control_character_is_a_render_error(
        smtp_server, ca_file, tmp_path, capsys):
    """No mail reader shows a control character in a name alike: it is a data error."""
    job = write_job(tmp_path, """
        from: "Reports <reports@example.org>"
        subject: "Report"
        text: "Hello"
        recipients:
          - {email: ann@example.org, name: "Ann\\e[2J\\a"}
        """ + smtp_block(smtp_server, ca_file))

    assert main(["preview", str(job)]) == 65

    err = capsys.readouterr().err
    assert "\x1b" not in err and "(ann@example.org)" in err and "control character" in err


def test_the_tls_context_verifies_certificate_and_host_name_by_default(ca_file):
    """The session's context verifies the certificate and the host name by default."""
    from mailbatch.job.smtpsettings import SmtpSettings
    from mailbatch.smtp.session import tls_context

    context = tls_context(SmtpSettings(host="h", port=465, ca_file=ca_file))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
