"""One run at a time (an OS lock), and SIGTERM/SIGINT: finish the message, report, exit 130."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from mailbatch.batch import lock as lock_module
from mailbatch.batch.lock import job_lock
from mailbatch.errors import (
    EXIT_ALREADY_RUNNING,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_OK,
    EXIT_PARTIAL,
    AlreadyRunningError,
)
from mailbatch.message.render import Renderer
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


# -- the lock file deleted or replaced -----------------------------------------------------


def test_a_lock_file_replaced_between_open_and_flock_is_locked_again(tmp_path, monkeypatch):
    path = tmp_path / "state" / "job.lock"
    real_flock = lock_module.fcntl.flock
    replaced = []

    def flock_after_a_replacement(fd: int, operation: int) -> None:
        if not replaced:  # another process unlinks the file and makes a new one meanwhile
            path.unlink()
            path.write_text("")
            replaced.append(True)
        real_flock(fd, operation)

    monkeypatch.setattr(lock_module.fcntl, "flock", flock_after_a_replacement)
    with job_lock(path, "job") as held:
        held.check()  # the file at the path is the one locked
        monkeypatch.setattr(lock_module.fcntl, "flock", real_flock)
        with pytest.raises(AlreadyRunningError), job_lock(path, "job"):
            pass
    assert replaced


def test_a_run_whose_lock_file_was_deleted_stops_and_nobody_gets_a_message_twice(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(slow_data_reply=(1, 0.2))
    n = 20
    job = batch_job(tmp_path / "job", server, ca_file, n, timeout=10, extra="batch: fixed\n")
    first = spawn(job)
    server.wait_for(2, timeout=20)
    (job.parent / ".mailbatch" / "job.lock").unlink()  # someone cleans up state_dir

    second = spawn(job)  # locks a new file at the same path
    _, second_err = second.communicate(timeout=60)
    _, first_err = first.communicate(timeout=60)

    assert "Traceback" not in first_err + second_err
    assert max(server.received_count_by_rcpt().values()) == 1, (first_err, second_err)
    assert EXIT_IO in (first.returncode, second.returncode), (first_err, second_err)
    assert "lock file was deleted or replaced" in first_err + second_err

    server.set_faults(slow_data_reply=None)
    finish = run_batch(job)

    assert finish.code in (EXIT_OK, EXIT_PARTIAL), finish.error  # an uncertain one may remain
    received = server.received_count_by_rcpt()
    assert max(received.values()) == 1
    assert {a for a, s in finish.statuses.items() if s == "sent"} <= set(received)
    assert set(finish.statuses.values()) <= {"sent", "uncertain"}


# -- stopping before sending began ---------------------------------------------------------


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has its own SIGTERM handler yet (SigCgt in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:"))
                 .split()[1], 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_sigterm_as_soon_as_the_program_runs_stops_it_cleanly_with_130_and_sends_nothing(
        smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path / "job", smtp_server, ca_file, N)
    process = spawn(job)
    deadline = time.monotonic() + 20
    while not _catches_sigterm(process.pid) and time.monotonic() < deadline:
        time.sleep(0.001)

    process.send_signal(signal.SIGTERM)  # before the heavy imports and the job file
    _, stderr = process.communicate(timeout=20)

    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "nothing was sent" in stderr and "Traceback" not in stderr
    assert smtp_server.connections == 0


def test_a_stop_while_rendering_never_connects(smtp_server, ca_file, tmp_path, password_env,
                                               monkeypatch):
    job = batch_job(tmp_path, smtp_server, ca_file, 5)
    stop = threading.Event()
    real_render = Renderer.render

    def render_then_signal(self: Renderer, recipient):  # SIGTERM arrives while rendering
        if recipient.index == 2:
            stop.set()
        return real_render(self, recipient)

    monkeypatch.setattr(Renderer, "render", render_then_signal)
    result = run_batch(job, stop=stop)

    assert result.code == EXIT_INTERRUPTED
    assert "nothing was sent" in result.error
    assert smtp_server.connections == 0
    assert result.report is None  # nothing was sent: no report


@pytest.mark.parametrize(("batch_key", "advice"), [
    ("batch: fixed\n", "run the same command again to resume batch fixed"),
    ("", "resume batch 2026-03-02 with 'mailbatch run --batch 2026-03-02 {job}'"),
], ids=["fixed-name", "dated-name"])
def test_the_stop_message_says_which_batch_a_resume_continues_and_how(
        batch_key, advice, smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, 4, extra=batch_key)
    stop = threading.Event()

    def stop_after_two(done: int, *_: object) -> None:
        if done == 2:
            stop.set()

    result = run_batch(job, stop=stop, progress=stop_after_two)

    assert result.code == EXIT_INTERRUPTED
    assert advice.format(job=job) in result.error
