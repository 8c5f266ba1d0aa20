"""Faults on the wire: every recipient not permanently rejected is received exactly once."""

from __future__ import annotations

from collections import Counter

import pytest

from mailbatch.errors import EXIT_OK, EXIT_PARTIAL, EXIT_TEMPFAIL
from tests.batchjobs import addresses, batch_job, run_batch

N = 6
EVERYONE = addresses(N)


@pytest.mark.parametrize("faults", [
    {"drop_after_every": 2},
    {"tempfail_every": 2},
    {"close_after_per_connection": 2},
    {"slow_mail_reply": (3, 2.5)},  # the client times out before the server stored anything
    {"drop_after_every": 3, "tempfail_every": 2, "close_after_per_connection": 2},
], ids=["drop", "tempfail-451", "close-421", "mail-timeout", "mixed"])
def test_every_recipient_is_received_exactly_once_under_transient_faults(
        faults, smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(**faults)
    # Messages deferred by a 4xx are retried last, so in "mixed" the last one alone meets
    # every fault that is left: it needs more attempts than five.
    job = batch_job(tmp_path, server, ca_file, N, timeout=1,
                    retry={"attempts": 10, "backoff": 0.01, "max_backoff": 0.05, "max_time": 20})

    result = run_batch(job)

    assert result.code == EXIT_OK, result.error
    assert server.received_count_by_rcpt() == Counter(EVERYONE)
    assert result.statuses == dict.fromkeys(EVERYONE, "sent")
    assert result.report["counts"]["sent"] == N


def test_permanently_rejected_recipients_are_refused_once_and_the_rest_sent_once(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(reject_pattern=r"^bad", drop_after_every=2)
    listed = ["bad1@example.org", *addresses(3), "bad2@example.org", *addresses(2, "more")]
    job = batch_job(tmp_path, server, ca_file, listed)

    result = run_batch(job)

    good = [a for a in listed if not a.startswith("bad")]
    assert result.code == EXIT_PARTIAL
    assert server.received_count_by_rcpt() == Counter(good)
    assert result.statuses == {a: "refused" if a.startswith("bad") else "sent" for a in listed}
    rows = {row["address"]: row for row in result.report["recipients"]}
    assert rows["bad1@example.org"]["code"] == 550
    assert "User unknown" in rows["bad1@example.org"]["message"]
    assert rows["bad1@example.org"]["attempts"] == 1  # a 5xx is never retried


def test_reply_lost_after_the_server_stored_the_message_is_uncertain_and_not_resent(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(slow_data_reply=(3, 2.5))
    job = batch_job(tmp_path, server, ca_file, 5, timeout=1)

    first = run_batch(job)

    third = "user3@example.org"
    assert first.code == EXIT_PARTIAL
    assert server.received_count_by_rcpt() == Counter(addresses(5))  # stored, reply too late
    assert first.statuses == {a: "uncertain" if a == third else "sent" for a in addresses(5)}
    assert "before the server confirmed it" in {
        r["address"]: r for r in first.report["recipients"]}[third]["message"]

    server.set_faults(slow_data_reply=None)
    resumed = run_batch(job)

    assert resumed.code == EXIT_PARTIAL
    assert resumed.report["resumed"] is True
    assert server.received_count_by_rcpt() == Counter(addresses(5))  # nothing sent again
    assert resumed.statuses == first.statuses

    resent = run_batch(job, resend_uncertain=True)

    assert resent.code == EXIT_OK
    assert resent.statuses == dict.fromkeys(addresses(5), "sent")
    assert server.received_count_by_rcpt()[third] == 2  # the user asked for the possible copy
    assert len(server.messages) == 6


def test_transient_failures_that_outlast_the_retries_are_deferred_and_sent_by_the_next_run(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(tempfail_every=1)
    job = batch_job(tmp_path, server, ca_file, 3,
                    retry={"attempts": 3, "backoff": 0.01, "max_backoff": 0.02, "max_time": 20})

    first = run_batch(job)

    assert first.code == EXIT_TEMPFAIL
    assert server.messages == []
    assert first.statuses == dict.fromkeys(addresses(3), "deferred")
    row = first.report["recipients"][0]
    assert row["code"] == 451
    assert row["attempts"] == 3
    assert "gave up after 3 attempt(s)" in row["message"]

    server.set_faults(tempfail_every=None)
    second = run_batch(job)

    assert second.code == EXIT_OK
    assert server.received_count_by_rcpt() == Counter(addresses(3))
    assert second.statuses == dict.fromkeys(addresses(3), "sent")


def test_server_gone_mid_batch_stops_with_the_rest_pending_and_a_resume_sends_each_once(
        smtp_server_factory, ca_file, tmp_path, password_env):
    first_server = smtp_server_factory()
    job = batch_job(tmp_path, first_server, ca_file, 5,
                    retry={"attempts": 2, "backoff": 0.01, "max_backoff": 0.02, "max_time": 20})

    def stop_after_two(done, total, address, outcome):
        if done == 2:
            first_server.stop()

    first = run_batch(job, progress=stop_after_two)

    assert first.code == EXIT_TEMPFAIL
    assert "the rest of the batch is pending" in first.error
    assert first.counts == Counter(sent=2, deferred=1, pending=2)

    second_server = smtp_server_factory()  # the same job, the server back on another port
    job = batch_job(tmp_path, second_server, ca_file, 5,
                    retry={"attempts": 2, "backoff": 0.01, "max_backoff": 0.02, "max_time": 20})
    second = run_batch(job)

    assert second.code == EXIT_OK
    total = first_server.received_count_by_rcpt() + second_server.received_count_by_rcpt()
    assert total == Counter(addresses(5))
    assert second.statuses == dict.fromkeys(addresses(5), "sent")
