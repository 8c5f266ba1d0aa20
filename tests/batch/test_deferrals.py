"""One deferred recipient does not stall the batch: a 4xx for one message resets the
transaction and the batch goes on in the same session; the deferred message is tried again
after the others; only a session failure (421, a drop, a timeout) reconnects."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from mailbatch.errors import EXIT_OK, EXIT_TEMPFAIL
from tests.batchjobs import addresses, batch_job, run_batch

GOOD = addresses(30)
LATE = ["late1@example.org", "late2@example.org"]
RETRY = {"attempts": 3, "backoff": 0.05, "max_backoff": 0.1, "max_time": 20}


def listed() -> list[str]:
    return GOOD[:10] + LATE[:1] + GOOD[10:20] + LATE[1:] + GOOD[20:]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-at-a-time"])
def test_recipients_deferred_at_rcpt_cost_no_new_session_and_are_retried_after_the_others(
        pipelining, smtp_server_factory, ca_file, tmp_path, password_env, caplog):
    server = smtp_server_factory(defer_pattern="^late", pipelining=pipelining)
    job = batch_job(tmp_path, server, ca_file, listed(), retry=RETRY)

    with caplog.at_level(logging.INFO, logger="mailbatch"):
        result = run_batch(job)

    assert result.code == EXIT_TEMPFAIL  # the two are deferred: the next run sends them
    assert server.connections == 1 and server.logins == 1
    assert server.received_count_by_rcpt() == Counter(GOOD)
    assert [m.rcpt_tos[0] for m in server.messages] == GOOD  # nobody waited for them
    assert server.deferred_rcpts == 2 * RETRY["attempts"]
    assert result.statuses == {**dict.fromkeys(GOOD, "sent"), **dict.fromkeys(LATE, "deferred")}
    rows = {r["address"]: r for r in result.report["recipients"]}
    assert rows["late1@example.org"]["code"] == 450
    assert rows["late1@example.org"]["attempts"] == 3
    assert "gave up after 3 attempt(s)" in rows["late1@example.org"]["message"]
    for address in LATE:  # logged once, when it was given up
        lines = [r for r in caplog.records if address in r.getMessage()]
        assert [r.levelno for r in lines] == [logging.WARNING], [r.getMessage() for r in lines]


def test_a_deferred_recipient_that_clears_is_sent_in_the_same_session_after_the_others(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(defer_pattern="^late")
    job = batch_job(tmp_path, server, ca_file, listed(), retry=RETRY)

    def clear_after_the_first_pass(done: int, total: int, address: str, outcome) -> None:
        if address == GOOD[-1]:
            server.set_faults(defer_pattern=None)  # the greylisting period is over

    result = run_batch(job, progress=clear_after_the_first_pass)

    assert result.code == EXIT_OK, result.error
    assert [m.rcpt_tos[0] for m in server.messages] == GOOD + LATE
    assert server.connections == 1
    rows = {r["address"]: r for r in result.report["recipients"]}
    assert rows["late1@example.org"]["attempts"] == 2
    assert result.statuses == dict.fromkeys(listed(), "sent")


def test_a_451_at_the_end_of_data_for_one_message_costs_no_new_session(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(tempfail_pattern="^late1@")
    job = batch_job(tmp_path, server, ca_file, listed(), retry=RETRY)

    result = run_batch(job)

    assert result.code == EXIT_TEMPFAIL
    assert server.connections == 1
    assert server.received_count_by_rcpt() == Counter([*GOOD, "late2@example.org"])
    assert result.statuses["late1@example.org"] == "deferred"
    assert result.report["recipients"][10]["code"] == 451


def test_messages_deferred_at_the_end_of_data_are_sent_in_later_rounds_of_the_same_session(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(tempfail_every=2)  # every other end of DATA: 451
    job = batch_job(tmp_path, server, ca_file, 8, retry={**RETRY, "attempts": 5})

    result = run_batch(job)

    assert result.code == EXIT_OK, result.error
    assert server.received_count_by_rcpt() == Counter(addresses(8))
    assert server.connections == 1


def test_retries_honour_max_time(smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(defer_pattern="^late")
    job = batch_job(tmp_path, server, ca_file, listed(),
                    retry={"attempts": 100, "backoff": 0.2, "max_backoff": 0.2, "max_time": 0.5})

    result = run_batch(job)

    assert result.statuses["late1@example.org"] == "deferred"
    attempts = {r["address"]: r["attempts"] for r in result.report["recipients"]}
    assert 2 <= attempts["late1@example.org"] <= 6  # max_time, not the 100 attempts, ended it


def test_a_421_still_ends_the_session_and_the_message_is_retried_on_a_new_one(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(close_after_per_connection=4)
    job = batch_job(tmp_path, server, ca_file, 10, retry=RETRY)

    result = run_batch(job)

    assert result.code == EXIT_OK, result.error
    assert server.received_count_by_rcpt() == Counter(addresses(10))
    assert server.connections == 3
