"""Provider limits: the rate limit (on a fake clock), messages per connection, and SIZE."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from mailbatch.batch.delivery import Sender
from mailbatch.batch.journal import Journal
from mailbatch.errors import EXIT_OK, EXIT_PARTIAL, InterruptedRun, SessionLostError
from mailbatch.job.model import load_job
from mailbatch.job.smtpsettings import RetryPolicy
from mailbatch.smtp.transport import SmtpTransport
from tests.batchjobs import addresses, batch_job, run_batch
from tests.helpers import smtp_block, write_job
from tests.smtpserver import PASSWORD, SmtpTestServer


class FakeClock:
    """monotonic() and sleep() for the Sender: sleeping only moves the clock and is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
        return False  # never stopped


def message(address: str) -> bytes:
    return (f"From: reports@example.org\r\nTo: {address}\r\nSubject: hello\r\n\r\n"
            "A short report.\r\n").encode()


def sender_for(server: SmtpTestServer, ca_file, tmp_path, clock: FakeClock, n: int,
               **settings) -> tuple[Sender, Journal, list[str]]:
    """A Sender over a real SmtpTransport for the job's settings, with n registered keys."""
    job = load_job(batch_job(tmp_path, server, ca_file, n, **settings))
    journal = Journal(tmp_path / "journal.sqlite")
    batch, _ = journal.batch("b")
    for i, address in enumerate(addresses(n)):
        journal.register(batch, address, i, address, f"<{i}@example.org>", [])
    sender = Sender(SmtpTransport(job.smtp, lambda: PASSWORD), journal, batch,
                    retry=job.smtp.retry, rate=job.smtp.rate, sleep=clock.sleep,
                    monotonic=clock.monotonic, rng=random.Random(7))
    return sender, journal, addresses(n)


def test_rate_limit_spaces_messages_by_the_interval_of_the_rate(
        smtp_server, ca_file, tmp_path):
    clock = FakeClock()
    sender, journal, listed = sender_for(smtp_server, ca_file, tmp_path, clock, 5,
                                         rate="30/minute")
    with journal, sender:
        for address in listed:
            assert sender.deliver(address, "reports@example.org", [address], message(address),
                                  address).status == "sent"

    assert clock.sleeps == [2.0, 2.0, 2.0, 2.0]  # 30/minute: one every 2 s, none before the 1st
    assert smtp_server.received_count_by_rcpt() == Counter(listed)


def test_rate_limit_counts_time_already_spent_between_messages(
        smtp_server, ca_file, tmp_path):
    clock = FakeClock()
    sender, journal, listed = sender_for(smtp_server, ca_file, tmp_path, clock, 4,
                                         rate="2/second")
    with journal, sender:
        for address, busy in zip(listed, (0.0, 0.2, 0.5, 0.7), strict=True):
            clock.now += busy  # time spent elsewhere (rendering, the previous reply)
            sender.deliver(address, "reports@example.org", [address], message(address), address)

    assert clock.sleeps == [0.3]  # 0.5 s interval: 0.2 waits 0.3, 0.5 and 0.7 wait nothing
    assert len(smtp_server.messages) == 4


def deliver_until_settled(sender: Sender, address: str):
    """deliver() as the runner does: again while the message is set aside for later."""
    outcome = sender.deliver(address, "reports@example.org", [address], message(address),
                             address)
    while outcome.status == "later":
        assert address in sender.later
        outcome = sender.deliver(address, "reports@example.org", [address], message(address),
                                 address)
    return outcome


def test_retry_backoff_grows_exponentially_with_jitter_and_is_bounded_by_attempts(
        smtp_server_factory, ca_file, tmp_path):
    server = smtp_server_factory(tempfail_every=1)
    clock = FakeClock()
    retry = {"attempts": 5, "backoff": 1, "max_backoff": 4, "max_time": 300}
    sender, journal, listed = sender_for(server, ca_file, tmp_path, clock, 1, retry=retry)
    with journal, sender:
        outcome = deliver_until_settled(sender, listed[0])

    assert outcome.status == "deferred"
    assert len(clock.sleeps) == 4  # between 5 attempts
    for sleep, ceiling in zip(clock.sleeps, (1, 2, 4, 4), strict=True):
        assert ceiling / 2 <= sleep <= ceiling  # jitter: half to all of the backoff
    assert server.messages == []
    assert server.connections == 1  # a 451 for one message costs no new session


def test_retries_stop_when_max_time_is_used_up(smtp_server_factory, ca_file, tmp_path):
    server = smtp_server_factory(tempfail_every=1)
    clock = FakeClock()
    retry = {"attempts": 1000, "backoff": 1, "max_backoff": 2, "max_time": 10}
    sender, journal, listed = sender_for(server, ca_file, tmp_path, clock, 1, retry=retry)
    with journal, sender:
        outcome = deliver_until_settled(sender, listed[0])

    assert outcome.status == "deferred"
    assert sum(clock.sleeps) <= 10
    assert len(clock.sleeps) < 20


def test_a_lost_session_is_retried_at_once_on_a_new_one_after_the_backoff(
        smtp_server_factory, ca_file, tmp_path):
    server = smtp_server_factory(slow_mail_reply=(1, 1.0))  # every MAIL answered too late
    clock = FakeClock()
    retry = {"attempts": 3, "backoff": 1, "max_backoff": 4, "max_time": 300}
    sender, journal, listed = sender_for(server, ca_file, tmp_path, clock, 1, retry=retry,
                                         timeout=0.3)
    with journal, sender:
        with pytest.raises(SessionLostError, match="the server kept failing"):
            sender.deliver(listed[0], "reports@example.org", listed, message(listed[0]),
                           listed[0])

        assert len(clock.sleeps) == 2 and sender.later == {}  # retried in place, not later
        assert server.connections == 3
        assert journal.status("b", listed[0]) == "deferred"


def test_stop_requested_while_a_deferred_message_waits_leaves_it_pending(
        smtp_server_factory, ca_file, tmp_path):
    server = smtp_server_factory(tempfail_every=1)
    clock = FakeClock()
    sender, journal, listed = sender_for(server, ca_file, tmp_path, clock, 1)
    sender.sleep = lambda seconds: True  # a SIGTERM arrived while waiting
    with journal, sender:
        first = sender.deliver(listed[0], "reports@example.org", listed, message(listed[0]),
                               listed[0])
        with pytest.raises(InterruptedRun, match="stopped while waiting to retry"):
            sender.deliver(listed[0], "reports@example.org", listed, message(listed[0]),
                           listed[0])

        assert first.status == "later"
        assert journal.status("b", listed[0]) == "pending"
    assert server.messages == []


@pytest.mark.parametrize(("n", "k"), [(7, 3), (6, 2), (5, 1)])
def test_per_connection_limit_opens_a_new_session_every_k_messages(
        n, k, smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(close_after_per_connection=k)  # the provider's own limit
    job = batch_job(tmp_path, server, ca_file, n, max_messages_per_connection=k)

    result = run_batch(job)

    assert result.code == EXIT_OK
    assert server.connections == math.ceil(n / k)
    assert server.logins == math.ceil(n / k)
    per_connection = Counter(m.connection for m in server.messages)
    assert max(per_connection.values()) <= k
    assert server.received_count_by_rcpt() == Counter(addresses(n))
    assert all(row["attempts"] == 1 for row in result.report["recipients"])  # never a 421


def test_message_larger_than_the_server_size_limit_fails_before_sending(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(data_size_limit=3000)
    job = write_job(tmp_path, """
        from: "Reports <reports@example.org>"
        subject: "Report"
        text: "Hello {{ 'x' * pad }}"
        recipients:
          - {email: small1@example.org, pad: 10}
          - {email: big@example.org, pad: 5000}
          - {email: small2@example.org, pad: 10}
        """ + smtp_block(server, ca_file))

    result = run_batch(job)

    assert result.code == EXIT_PARTIAL
    assert result.statuses == {"small1@example.org": "sent", "big@example.org": "failed",
                               "small2@example.org": "sent"}
    big = next(r for r in result.report["recipients"] if r["address"] == "big@example.org")
    assert "larger than the 3000 bytes the server accepts (SIZE)" in big["message"]
    assert big["attempts"] == 0
    assert server.received_count_by_rcpt() == Counter(["small1@example.org",
                                                        "small2@example.org"])


def test_retry_policy_defaults_are_bounded():
    policy = RetryPolicy()
    assert policy.attempts >= 1 and policy.max_time > 0 and policy.max_backoff >= policy.backoff
