"""OAuth2 tokens that expire: a refused login runs oauth2_token_command once more and retries.

The token command here prints a new token on every call (token-1, token-2, ...), counting its
calls in a file; the real test server accepts only the tokens it is given, each for a limited
number of logins when ``token_logins`` is set.
"""

from __future__ import annotations

import base64
import sys
from collections import Counter
from pathlib import Path

import pytest

from mailbatch.cli.main import main
from mailbatch.errors import EXIT_NOPERM, EXIT_OK
from tests.batchjobs import FAST_RETRY, addresses, newest_report, statuses
from tests.helpers import smtp_block, write_job
from tests.smtpserver import USERNAME

N = 4
TOKENS = [f"token-{n}" for n in range(1, 5)]


def token_command(folder: Path, fail_from: int | None = None) -> list[str]:
    """A command printing token-N on its N-th call (exit 1 from call ``fail_from`` on)."""
    script = folder / "mint_token.py"  # not token.py: that would shadow the stdlib module
    script.write_text(
        "import pathlib, sys\n"
        f"counter = pathlib.Path({str(folder / 'calls')!r})\n"
        "n = int(counter.read_text()) + 1 if counter.exists() else 1\n"
        "counter.write_text(str(n))\n"
        f"if n >= {fail_from or 1_000_000}:\n"
        "    sys.exit(1)\n"
        "print(f'token-{n}')\n", encoding="utf-8")
    return [sys.executable, str(script)]


def calls(folder: Path) -> int:
    counter = folder / "calls"
    return int(counter.read_text()) if counter.exists() else 0


def oauth_job(folder: Path, server, ca_file: Path, fail_from: int | None = None,
              **smtp) -> Path:
    rows = "\n".join(f"  - {{email: {a}, name: P{i}}}" for i, a in enumerate(addresses(N)))
    return write_job(folder, smtp_block(
        server, ca_file, password_env=None, retry=FAST_RETRY,
        oauth2_token_command=token_command(folder, fail_from), **smtp)
        + 'from: "Reports <reports@example.org>"\nsubject: "Hi {{ name }}"\n'
        + f'text: "Hello {{{{ name }}}}"\nbatch: fixed\nrecipients:\n{rows}\n')


def assert_no_token(text: str) -> None:
    for token in TOKENS:
        forms = [token, base64.b64encode(
            f"user={USERNAME}\x01auth=Bearer {token}\x01\x01".encode()).decode()]
        for form in forms:
            assert form not in text, f"token leaked as {form!r}"


def test_a_token_refused_at_the_first_login_is_fetched_again_once_and_the_run_goes_on(
        smtp_server_factory, ca_file, tmp_path, capsys):
    server = smtp_server_factory(oauth2_tokens=("token-2",))  # the first one printed is stale
    job = oauth_job(tmp_path, server, ca_file)

    code = main(["run", "-vv", "--debug-smtp", str(job)])

    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    assert calls(tmp_path) == 2
    assert (server.failed_logins, server.logins) == (1, 1)
    assert server.received_count_by_rcpt() == Counter(addresses(N))
    assert "getting a fresh token from smtp.oauth2_token_command" in err
    assert_no_token(err)


def test_a_token_that_expires_mid_run_is_fetched_again_when_reconnecting(
        smtp_server_factory, ca_file, tmp_path, capsys):
    # Each token is good for one login, and the job reconnects after every 2 messages: the
    # second connection's login with the cached token is refused as expired.
    server = smtp_server_factory(oauth2_tokens=("token-1", "token-2"), token_logins=1)
    job = oauth_job(tmp_path, server, ca_file, max_messages_per_connection=2)

    code = main(["run", "-v", str(job)])

    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    assert calls(tmp_path) == 2  # once at the start, once when token-1 had expired
    assert (server.logins, server.failed_logins) == (2, 1)
    assert server.received_count_by_rcpt() == Counter(addresses(N))  # each exactly once
    assert_no_token(err)


def test_a_refused_fresh_token_gives_up_after_one_more_try(
        smtp_server_factory, ca_file, tmp_path, capsys):
    server = smtp_server_factory(oauth2_tokens=())  # no token is any good

    code = main(["run", str(job := oauth_job(tmp_path, server, ca_file))])

    err = capsys.readouterr().err
    assert code == EXIT_NOPERM
    assert calls(tmp_path) == 2 and server.failed_logins == 2  # no loop
    assert "login refused by 127.0.0.1 for mailer: 535" in err
    assert "with a fresh token from smtp.oauth2_token_command, after the previous one was " \
           "refused too" in err
    assert server.messages == [] and job.exists()


def test_mid_run_a_token_command_that_fails_stops_the_batch_as_a_refused_login_and_it_resumes(
        smtp_server_factory, ca_file, tmp_path, capsys):
    server = smtp_server_factory(oauth2_tokens=tuple(TOKENS), token_logins=1)
    job = oauth_job(tmp_path, server, ca_file, fail_from=2, max_messages_per_connection=2)

    code = main(["run", str(job)])

    err = capsys.readouterr().err
    assert code == EXIT_NOPERM, err
    assert "a fresh token could not be had" in err and "failed with exit status 1" in err
    report = newest_report(job.parent)
    assert Counter(statuses(report).values()) == Counter(sent=2, pending=2)

    (tmp_path / "calls").unlink()  # the token source works again: token-1 is unused
    server.set_faults(token_logins=None)
    assert main(["run", str(job)]) == EXIT_OK
    assert server.received_count_by_rcpt() == Counter(addresses(N))


def test_a_server_that_says_the_token_expired_with_another_code_gets_a_fresh_one(
        smtp_server_factory, ca_file, tmp_path, capsys):
    server = smtp_server_factory(oauth2_tokens=("token-2",),
                                 token_refusal="454 4.7.0 Token expired, get a new one")
    job = oauth_job(tmp_path, server, ca_file)

    assert main(["check", "--connect", str(job)]) == EXIT_OK
    assert calls(tmp_path) == 2 and server.logins == 1


@pytest.mark.parametrize("source", ["password_command", "oauth2_temporary"])
def test_other_refusals_are_not_retried(source, smtp_server_factory, ca_file, tmp_path, capsys):
    if source == "password_command":  # a password does not expire by the hour: no retry
        server = smtp_server_factory()
        counted = token_command(tmp_path)  # prints token-1, which is not the password
        job = write_job(tmp_path, smtp_block(server, ca_file, password_env=None,
                                             password_command=counted)
                        + 'from: "r@example.org"\nsubject: "s"\ntext: "t"\n'
                        + "recipients:\n  - {email: a@example.org}\n")
    else:  # a temporary failure that does not say the token expired
        server = smtp_server_factory(oauth2_tokens=(),
                                     token_refusal="454 4.7.0 Temporary authentication failure")
        job = oauth_job(tmp_path, server, ca_file)

    assert main(["run", str(job)]) == EXIT_NOPERM
    assert calls(tmp_path) == 1
    assert "fresh token" not in capsys.readouterr().err
