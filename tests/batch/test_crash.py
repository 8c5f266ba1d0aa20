"""A real `mailbatch run` killed with SIGKILL mid-batch, then run again: each recipient once."""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from mailbatch.errors import EXIT_OK, EXIT_PARTIAL
from tests.batchjobs import addresses, batch_job, newest_report, spawn, statuses

N = 6


def kill(process) -> int:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)
    return process.returncode


def test_killed_while_waiting_for_the_final_reply_resumes_without_resending_that_message(
        smtp_server_factory, ca_file, tmp_path, password_env):
    # The 3rd message is stored at once but its reply would take 30 s: the process is in the
    # uncertain window when it is killed, deterministically.
    server = smtp_server_factory(slow_data_reply=(3, 30))
    job = batch_job(tmp_path / "job", server, ca_file, N, timeout=60, extra="batch: fixed\n")
    first = spawn(job)
    server.wait_for(3, timeout=20)
    assert kill(first) == -signal.SIGKILL
    server.set_faults(slow_data_reply=None)

    second = spawn(job)
    _, stderr = second.communicate(timeout=30)

    assert second.returncode == EXIT_PARTIAL, stderr  # one uncertain: not resent, reported
    assert server.received_count_by_rcpt() == Counter(addresses(N))
    report = newest_report(job.parent)
    assert report["resumed"] is True
    assert report["total"] == N
    assert statuses(report) == {a: "uncertain" if a == "user3@example.org" else "sent"
                                for a in addresses(N)}
    assert "uncertain" in stderr


@pytest.mark.parametrize("kill_after", [1, 4])
def test_killed_between_messages_resumes_and_every_recipient_gets_exactly_one(
        kill_after, smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory()
    job = batch_job(tmp_path / "job", server, ca_file, N, rate="10/second",
                    extra="batch: fixed\n")
    first = spawn(job)
    server.wait_for(kill_after, timeout=20)
    kill(first)  # somewhere in the next 0.1 s: waiting for the rate, or mid-transaction

    second = spawn(job)
    _, stderr = second.communicate(timeout=30)

    received = server.received_count_by_rcpt()
    assert received == Counter(addresses(N)), stderr
    report = newest_report(job.parent)
    assert report["resumed"] is True
    final = statuses(report)
    assert set(final) == set(addresses(N))
    assert set(final.values()) <= {"sent", "uncertain"}
    assert all(received[a] == 1 for a, s in final.items() if s == "sent")
    assert second.returncode == (EXIT_OK if "uncertain" not in final.values() else EXIT_PARTIAL)
