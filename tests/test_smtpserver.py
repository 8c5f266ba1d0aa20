"""The test SMTP server, exercised with plain smtplib: what it records and how it misbehaves."""

from __future__ import annotations

import email
import email.policy
import os
import smtplib
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml

from tests.helpers import PASSWORD_ENV, smtp_block, write_job
from tests.smtpserver import OAUTH2_TOKEN, PASSWORD, USERNAME, Received, SmtpTestServer

SENDER = "reports@example.org"
Factory = Callable[..., SmtpTestServer]


def make_message(n: int = 1, to: str = "ann@example.org") -> bytes:
    """A message with CRLF line ends, as smtplib sends it, so bytes can be compared exactly."""
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = to
    msg["Subject"] = f"Report {n}"
    msg.set_content(f"Hello nº{n}\n.a line starting with a dot\n")
    return msg.as_bytes(policy=email.policy.SMTP)


@contextmanager
def client(
    server: SmtpTestServer, ca_file: Path, *, login: bool = True, timeout: float = 2
) -> Iterator[smtplib.SMTP_SSL]:
    """An implicit-TLS smtplib session that trusts the test CA, logged in unless told not to."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with smtplib.SMTP_SSL(server.host, server.port, context=context, timeout=timeout) as smtp:
        if login:
            smtp.login(USERNAME, PASSWORD)
        yield smtp


def xoauth2(token: str) -> Callable[..., str]:
    return lambda challenge=None: f"user={USERNAME}\x01auth=Bearer {token}\x01\x01"


# -- recording --------------------------------------------------------------------------------


def test_sent_message_is_recorded_byte_identical_with_its_envelope(smtp_server, ca_file):
    data = make_message()
    with client(smtp_server, ca_file) as smtp:
        refused = smtp.sendmail(SENDER, ["ann@example.org", "bob@example.org"], data)

    assert refused == {}
    assert smtp_server.messages == [
        Received(SENDER, ["ann@example.org", "bob@example.org"], data, connection=1)
    ]
    parsed = email.message_from_bytes(smtp_server.messages[0].data, policy=email.policy.default)
    assert parsed.as_bytes(policy=email.policy.SMTP) == data
    assert smtp_server.messages[0].message["Subject"] == "Report 1"


def test_connections_and_logins_are_counted_per_session(smtp_server, ca_file):
    for n in (1, 2):
        with client(smtp_server, ca_file) as smtp:
            smtp.sendmail(SENDER, ["ann@example.org"], make_message(n))

    assert smtp_server.connections == 2
    assert smtp_server.logins == 2
    assert smtp_server.login_mechanisms == ["PLAIN", "PLAIN"]
    assert [m.connection for m in smtp_server.messages] == [1, 2]


def test_login_mechanism_is_accepted_too(smtp_server, ca_file):
    with client(smtp_server, ca_file, login=False) as smtp:
        smtp.ehlo()
        smtp.user, smtp.password = USERNAME, PASSWORD
        code, _ = smtp.auth("LOGIN", smtp.auth_login)

    assert code == 235
    assert smtp_server.login_mechanisms == ["LOGIN"]


def test_messages_can_be_looked_up_by_recipient(smtp_server, ca_file):
    with client(smtp_server, ca_file) as smtp:
        smtp.sendmail(SENDER, ["ann@example.org"], make_message(1))
        smtp.sendmail(SENDER, ["ann@example.org", "bob@example.org"], make_message(2))

    assert [m.message["Subject"] for m in smtp_server.messages_to("bob@example.org")] == [
        "Report 2"
    ]
    assert smtp_server.received_count_by_rcpt() == Counter(
        {"ann@example.org": 2, "bob@example.org": 1}
    )


def test_wait_for_returns_the_messages_or_says_how_many_came(smtp_server, ca_file):
    with client(smtp_server, ca_file) as smtp:
        smtp.sendmail(SENDER, ["ann@example.org"], make_message())

    assert len(smtp_server.wait_for(1)) == 1
    with pytest.raises(TimeoutError, match=r"expected 2 messages within 0\.05s, got 1"):
        smtp_server.wait_for(2, timeout=0.05)


def test_reset_clears_records_but_keeps_serving(smtp_server, ca_file):
    with client(smtp_server, ca_file) as smtp:
        smtp.sendmail(SENDER, ["ann@example.org"], make_message())
    smtp_server.reset()

    assert (smtp_server.messages, smtp_server.connections, smtp_server.logins) == ([], 0, 0)
    with client(smtp_server, ca_file) as smtp:
        smtp.sendmail(SENDER, ["ann@example.org"], make_message())
    assert [m.connection for m in smtp_server.messages] == [1]


# -- authentication and TLS -------------------------------------------------------------------


def test_wrong_password_gets_535_without_a_hang(smtp_server, ca_file):
    started = time.monotonic()
    with (
        client(smtp_server, ca_file, login=False) as smtp,
        pytest.raises(smtplib.SMTPAuthenticationError) as refused,
    ):
        smtp.login(USERNAME, "wrong")

    assert refused.value.smtp_code == 535
    assert refused.value.smtp_error == b"5.7.8 Authentication credentials invalid"
    assert time.monotonic() - started < 1
    # smtplib's login() tries every mechanism both sides know: PLAIN, then LOGIN.
    assert (smtp_server.logins, smtp_server.failed_logins) == (0, 2)


def test_mail_without_login_gets_530(smtp_server, ca_file):
    with client(smtp_server, ca_file, login=False) as smtp:
        smtp.ehlo()
        code, _ = smtp.mail(SENDER)

    assert code == 530


def test_auth_can_be_made_optional(smtp_server_factory, ca_file):
    server = smtp_server_factory(auth_required=False)
    with client(server, ca_file, login=False) as smtp:
        smtp.sendmail(SENDER, ["ann@example.org"], make_message())

    assert len(server.messages) == 1


def test_client_without_the_test_ca_fails_certificate_verification(smtp_server):
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(
            smtp_server.host, smtp_server.port, context=ssl.create_default_context(), timeout=2
        )


def test_xoauth2_with_the_test_token_logs_in(smtp_server, ca_file):
    with client(smtp_server, ca_file, login=False) as smtp:
        smtp.ehlo()
        assert "XOAUTH2" in smtp.esmtp_features["auth"].split()
        code, _ = smtp.auth("XOAUTH2", xoauth2(OAUTH2_TOKEN))
        smtp.sendmail(SENDER, ["ann@example.org"], make_message())

    assert code == 235
    assert smtp_server.login_mechanisms == ["XOAUTH2"]
    assert len(smtp_server.messages) == 1


def test_xoauth2_with_another_token_gets_535(smtp_server, ca_file):
    with client(smtp_server, ca_file, login=False) as smtp:
        smtp.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp.auth("XOAUTH2", xoauth2("ya29.expired"))

    assert refused.value.smtp_code == 535
    assert smtp_server.failed_logins == 1


def test_starttls_mode_requires_starttls_before_auth_and_mail(smtp_server_factory, ca_file):
    server = smtp_server_factory(security="starttls")
    with smtplib.SMTP(server.host, server.port, timeout=2) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth")
        assert smtp.mail(SENDER)[0] == 530

        smtp.starttls(context=ssl.create_default_context(cafile=str(ca_file)))
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        smtp.login(USERNAME, PASSWORD)
        smtp.sendmail(SENDER, ["ann@example.org"], make_message())

    assert len(server.messages) == 1


def test_plain_mode_offers_auth_but_no_starttls(smtp_server_factory):
    server = smtp_server_factory(security="plain-no-starttls")
    with smtplib.SMTP(server.host, server.port, timeout=2) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        assert "PLAIN" in smtp.esmtp_features["auth"].split()
        smtp.login(USERNAME, PASSWORD)  # so a client that refuses here does so on its own

    assert server.logins == 1


def test_size_limit_is_advertised_and_enforced(smtp_server_factory, ca_file):
    server = smtp_server_factory(data_size_limit=1000)
    with client(server, ca_file) as smtp:
        smtp.ehlo()
        assert smtp.esmtp_features["size"] == "1000"
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail(SENDER, ["ann@example.org"], make_message() + b"x" * 1000 + b"\r\n")

    assert refused.value.smtp_code == 552
    assert server.messages == []


# -- faults -----------------------------------------------------------------------------------


def test_drop_after_every_stores_replies_then_hangs_up(smtp_server_factory, ca_file):
    server = smtp_server_factory(drop_after_every=2)
    with client(server, ca_file) as smtp:
        smtp.sendmail(SENDER, ["ann@example.org"], make_message(1))
        smtp.sendmail(SENDER, ["ann@example.org"], make_message(2))  # gets its 250
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.sendmail(SENDER, ["ann@example.org"], make_message(3))
    with client(server, ca_file) as smtp:
        smtp.sendmail(SENDER, ["ann@example.org"], make_message(3))

    assert [(m.message["Subject"], m.connection) for m in server.messages] == [
        ("Report 1", 1),
        ("Report 2", 1),
        ("Report 3", 2),
    ]


def test_tempfail_every_answers_451_and_does_not_store(smtp_server_factory, ca_file):
    server = smtp_server_factory(tempfail_every=2)
    with client(server, ca_file) as smtp:
        smtp.sendmail(SENDER, ["ann@example.org"], make_message(1))
        with pytest.raises(smtplib.SMTPDataError) as failed:
            smtp.sendmail(SENDER, ["ann@example.org"], make_message(2))
        smtp.sendmail(SENDER, ["ann@example.org"], make_message(3))

    assert (failed.value.smtp_code, failed.value.smtp_error) == (451, b"4.3.0 Try again later")
    assert [m.message["Subject"] for m in server.messages] == ["Report 1", "Report 3"]


def test_close_after_per_connection_answers_421_to_the_next_mail(smtp_server_factory, ca_file):
    server = smtp_server_factory(close_after_per_connection=2)
    with client(server, ca_file) as smtp:
        smtp.sendmail(SENDER, ["ann@example.org"], make_message(1))
        smtp.sendmail(SENDER, ["ann@example.org"], make_message(2))
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail(SENDER, ["ann@example.org"], make_message(3))
    with client(server, ca_file) as smtp:
        smtp.sendmail(SENDER, ["ann@example.org"], make_message(3))

    assert refused.value.smtp_code == 421
    assert refused.value.smtp_error == b"4.7.0 Too many messages, closing connection"
    assert [m.connection for m in server.messages] == [1, 1, 2]


def test_reject_pattern_refuses_matching_recipients_only(smtp_server_factory, ca_file):
    server = smtp_server_factory(reject_pattern=r"^bad")
    with client(server, ca_file) as smtp:
        refused = smtp.sendmail(SENDER, ["ann@example.org", "bad@example.org"], make_message())
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail(SENDER, ["bad@example.org"], make_message())

    assert refused == {"bad@example.org": (550, b"5.1.1 User unknown")}
    assert [m.rcpt_tos for m in server.messages] == [["ann@example.org"]]


def test_slow_data_reply_times_out_after_the_message_was_stored(smtp_server_factory, ca_file):
    server = smtp_server_factory(slow_data_reply=(2, 1.0))
    with client(server, ca_file, timeout=0.3) as smtp:
        smtp.sendmail(SENDER, ["ann@example.org"], make_message(1))
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            smtp.sendmail(SENDER, ["ann@example.org"], make_message(2))

    assert [m.message["Subject"] for m in server.messages] == ["Report 1", "Report 2"]


def test_slow_mail_reply_times_out_before_anything_is_stored(smtp_server_factory, ca_file):
    server = smtp_server_factory(slow_mail_reply=(1, 0.5))
    with (
        client(server, ca_file, timeout=0.2) as smtp,
        pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"),
    ):
        smtp.sendmail(SENDER, ["ann@example.org"], make_message())

    time.sleep(0.5)
    assert server.messages == []


def test_fail_login_after_refuses_later_logins(smtp_server_factory, ca_file):
    server = smtp_server_factory(fail_login_after=1)
    with client(server, ca_file):
        pass
    with (
        client(server, ca_file, login=False) as smtp,
        pytest.raises(smtplib.SMTPAuthenticationError) as refused,
    ):
        smtp.login(USERNAME, PASSWORD)

    assert refused.value.smtp_code == 535
    assert (server.logins, server.failed_logins) == (1, 2)  # PLAIN, then LOGIN


def test_faults_can_be_switched_at_runtime(smtp_server, ca_file):
    with client(smtp_server, ca_file) as smtp:
        smtp.sendmail(SENDER, ["ann@example.org"], make_message(1))
        smtp_server.set_faults(tempfail_every=1)
        with pytest.raises(smtplib.SMTPDataError):
            smtp.sendmail(SENDER, ["ann@example.org"], make_message(2))
        smtp_server.set_faults(tempfail_every=None)
        smtp.sendmail(SENDER, ["ann@example.org"], make_message(3))

    assert [m.message["Subject"] for m in smtp_server.messages] == ["Report 1", "Report 3"]


def test_unknown_or_invalid_faults_are_refused(ca):
    with pytest.raises(TypeError):
        SmtpTestServer(ca, drop_every=1)
    with pytest.raises(ValueError, match="tempfail_every"):
        SmtpTestServer(ca, tempfail_every=0)


def test_stop_is_prompt_while_a_slow_reply_is_pending(ca, ca_file):
    server = SmtpTestServer(ca, slow_data_reply=(1, 30)).start()
    errors: list[Exception] = []

    def send() -> None:
        try:
            with client(server, ca_file, timeout=10) as smtp:
                smtp.sendmail(SENDER, ["ann@example.org"], make_message())
        except smtplib.SMTPException as err:
            errors.append(err)

    sender = threading.Thread(target=send)
    sender.start()
    server.wait_for(1)
    started = time.monotonic()
    server.stop()
    sender.join(timeout=5)

    assert time.monotonic() - started < 2
    assert not sender.is_alive()
    assert [type(err) for err in errors] == [smtplib.SMTPServerDisconnected]


# -- job file helpers -------------------------------------------------------------------------


def test_smtp_block_embeds_in_an_indented_job_text(smtp_server, ca_file, tmp_path):
    job = write_job(
        tmp_path,
        f"""
        subject: Hi
        {smtp_block(smtp_server, ca_file, security="tls", timeout=1)}
        recipients:
          - email: ann@example.org
        """,
        files={"data/people.csv": "email\n", "logo.png": b"\x89PNG"},
    )

    loaded = yaml.safe_load(job.read_text())
    assert loaded["smtp"] == {
        "host": "127.0.0.1",
        "port": smtp_server.port,
        "username": USERNAME,
        "password_env": PASSWORD_ENV,
        "ca_file": str(ca_file),
        "timeout": 1,
        "security": "tls",
    }
    assert loaded["recipients"] == [{"email": "ann@example.org"}]
    assert (tmp_path / "data/people.csv").read_text() == "email\n"
    assert (tmp_path / "logo.png").read_bytes() == b"\x89PNG"


def test_smtp_block_appended_to_a_job_text_leaves_out_none_keys(smtp_server, tmp_path):
    job = write_job(tmp_path, "\n    subject: Hi\n" + smtp_block(smtp_server, None))

    assert "ca_file" not in yaml.safe_load(job.read_text())["smtp"]


def test_password_env_fixture_holds_the_test_password(password_env):
    assert password_env == PASSWORD_ENV
    assert os.environ[password_env] == PASSWORD
