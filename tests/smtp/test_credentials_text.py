"""Secrets as people have them: a password beyond ASCII logs in (PLAIN and LOGIN carry UTF-8),
and a password file or command output that is not UTF-8 is a clear job error that never shows
the bytes, not a crash."""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbatch.cli.main import main
from mailbatch.errors import JobError
from mailbatch.job.smtpsettings import PasswordSource, SmtpSettings
from mailbatch.smtp.credentials import get_secret
from tests import smtpserver
from tests.helpers import PASSWORD_ENV, smtp_block, write_job

BODY = """
from: reports@example.org
subject: Hi
text: Hello
recipients: [{email: ann@example.org}]
"""


@pytest.mark.parametrize("secret", ["Grüße-€-pässword", "пароль", "密码🔑"])
def test_a_password_beyond_ascii_logs_in_and_sends(smtp_server, ca_file, tmp_path, monkeypatch,
                                                    capsys, secret):
    monkeypatch.setattr(smtpserver, "PASSWORD", secret)
    monkeypatch.setenv(PASSWORD_ENV, secret)
    job = write_job(tmp_path, smtp_block(smtp_server, ca_file) + BODY)

    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    assert [m.rcpt_tos for m in smtp_server.messages] == [["ann@example.org"]]


def test_a_wrong_password_beyond_ascii_is_a_refused_login_not_a_crash(
        smtp_server, ca_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(PASSWORD_ENV, "nöt-the-password")
    job = write_job(tmp_path, smtp_block(smtp_server, ca_file) + BODY)
    assert main(["check", "--connect", str(job)]) == 77
    assert "login refused" in capsys.readouterr().err


def _settings(kind: str, value: str | tuple[str, ...]) -> SmtpSettings:
    return SmtpSettings(host="mail.example.org", port=465, username="me",
                        password=PasswordSource(kind=kind, value=value))


@given(data=st.binary(min_size=1, max_size=40))
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_bytes_in_a_password_file_give_the_password_or_a_job_error(tmp_path, data):
    path = tmp_path / "password"
    path.write_bytes(data)
    os.chmod(path, 0o600)
    try:
        secret = get_secret(_settings("file", str(path)))
    except JobError as err:
        assert err.field == "smtp.password_file"
        assert repr(data)[2:-1] not in str(err) or len(data) < 3  # the bytes are not shown
        return
    assert secret == data.decode("utf-8").rstrip("\r\n")


def test_a_password_command_printing_bytes_that_are_not_utf8_is_a_job_error():
    command = (sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'\\xffsecret')")
    with pytest.raises(JobError, match="is not UTF-8 text") as caught:
        get_secret(_settings("command", command))
    assert caught.value.field == "smtp.password_command"
    assert "secret" not in str(caught.value).replace("the secret", "")


def test_an_empty_password_variable_is_called_empty_not_unset(monkeypatch):
    monkeypatch.setenv("MAILBATCH_EMPTY_PW", "")
    with pytest.raises(JobError, match="MAILBATCH_EMPTY_PW is empty"):
        get_secret(_settings("env", "MAILBATCH_EMPTY_PW"))


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_each_login_mechanism_carries_a_password_beyond_ascii_as_utf8(
        smtp_server, ca_file, monkeypatch, mechanism):
    import ssl

    from mailbatch.smtp.session import _SMTP_SSL

    monkeypatch.setattr(smtpserver, "PASSWORD", "Grüße-€")
    context = ssl.create_default_context(cafile=str(ca_file))
    with _SMTP_SSL(smtp_server.host, smtp_server.port, context=context, timeout=5) as smtp:
        smtp.ehlo()
        smtp.user, smtp.password = smtpserver.USERNAME, "Grüße-€"
        method = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
        code, _ = smtp.auth(mechanism, method, initial_response_ok=mechanism == "PLAIN")
    assert code == 235 and smtp_server.login_mechanisms == [mechanism]
