"""One run at a time (an OS lock), and SIGTERM/SIGINT: finish the message, report, exit 130."""

from __future__ import annotations

import json
import signal
from collections import Counter

import pytest

from mailbatch.batch.lock import job_lock
from mailbatch.errors import EXIT_ALREADY_RUNNING, EXIT_INTERRUPTED, EXIT_OK, AlreadyRunningError
from tests.batchjobs import addresses, batch_job, newest_report, run_batch, spawn, statuses

N = 5


def test_second_run_while_one_holds_the_lock_exits_at_once_and_lock_dies_with_the_process(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(slow_data_reply=(2, 30))
    job = batch_job(tmp_path / "job", server, ca_file, N, timeout=60, extra="batch: fixed\n")
    holder = spawn(job)
    server.wait_for(2, timeout=20)  # the holder is now waiting for a reply, lock held

    second = spawn(job)
    _, stderr = second.communicate(timeout=10)

    assert second.returncode == EXIT_ALREADY_RUNNING
    assert f"job is already running (pid {holder.pid}" in stderr
    assert "Traceback" not in stderr
    assert len(server.messages) == 2  # the second run sent nothing

    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=10)
    server.set_faults(slow_data_reply=None)
    third = spawn(job)  # the kernel released the lock with the killed process
    _, stderr = third.communicate(timeout=30)

    assert third.returncode != EXIT_ALREADY_RUNNING, stderr
    assert server.received_count_by_rcpt() == Counter(addresses(N))


def test_lock_is_exclusive_and_reusable_in_one_process(tmp_path):
    path = tmp_path / "state" / "job.lock"
    with (job_lock(path, "job"),
          pytest.raises(AlreadyRunningError, match="already running"),
          job_lock(path, "job")):
        pass
    with job_lock(path, "job"):
        pass


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_batch_finishes_the_message_in_flight_writes_the_report_and_exits_130(
        signum, smtp_server_factory, ca_file, tmp_path, password_env):
    # The 3rd reply comes after 2 s: the signal lands while that message is in flight.
    server = smtp_server_factory(slow_data_reply=(3, 2.0))
    job = batch_job(tmp_path / "job", server, ca_file, N, timeout=20, extra="batch: fixed\n")
    process = spawn(job)
    server.wait_for(3, timeout=20)

    process.send_signal(signum)
    _, stderr = process.communicate(timeout=20)

    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    report = json.loads((job.parent / "reports" / "job-fixed.json").read_text())
    assert statuses(report) == {a: "sent" if a in addresses(3) else "pending"
                                for a in addresses(N)}
    assert report["counts"]["sent"] == 3 and report["counts"]["pending"] == 2
    assert "stopped" in report["error"]

    server.set_faults(slow_data_reply=None)
    resumed = run_batch(job)

    assert resumed.code == EXIT_OK
    assert server.received_count_by_rcpt() == Counter(addresses(N))
    assert resumed.report["resumed"] is True


def test_second_signal_abandons_the_message_in_flight_as_uncertain(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(slow_data_reply=(2, 30))
    job = batch_job(tmp_path / "job", server, ca_file, N, timeout=60, extra="batch: fixed\n")
    process = spawn(job)
    server.wait_for(2, timeout=20)

    process.send_signal(signal.SIGTERM)
    first_line = process.stderr.readline()  # the first signal was handled (signals coalesce)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)

    assert "received SIGTERM" in first_line

    assert process.returncode == EXIT_INTERRUPTED, stderr
    report = newest_report(job.parent)
    assert statuses(report)["user2@example.org"] == "uncertain"

    server.set_faults(slow_data_reply=None)
    resumed = run_batch(job)

    assert server.received_count_by_rcpt() == Counter(addresses(N))  # user2 not sent again
    assert resumed.statuses["user2@example.org"] == "uncertain"


def test_sigterm_during_a_rate_limit_wait_stops_at_once(
        smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path / "job", smtp_server, ca_file, 3, rate="2/minute",
                    extra="batch: fixed\n")
    process = spawn(job)
    smtp_server.wait_for(1, timeout=20)  # the next one is 30 s away

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=10)

    assert process.returncode == EXIT_INTERRUPTED, stderr  # well before the 30 s were up
    assert Counter(statuses(newest_report(job.parent)).values()) == Counter(sent=1, pending=2)
