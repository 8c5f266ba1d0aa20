"""Full disks and unwritable folders: found before sending where possible, always one clear
error with its own exit code, never a traceback, and never a second copy on the resume."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbatch.batch import runner
from mailbatch.errors import EXIT_IO, EXIT_OK, EXIT_PARTIAL, EXIT_TEMPFAIL
from tests.batchjobs import addresses, batch_job, newest_report, run_batch
from tests.pipeline import run_cli

BIG_TEXT = 'text: "{{ \'x\' * 20000 }} {{ name }}"\n'


def run_with_file_size_limit(job: Path, limit: int) -> subprocess.CompletedProcess[str]:
    """``mailbatch run JOB`` in a process that cannot write any file past ``limit`` bytes
    (RLIMIT_FSIZE: writes fail with EFBIG, as they fail with ENOSPC on a full disk)."""
    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-B", "-m", "mailbatch", "run", str(job)],
                          cwd=job.parent, env=dict(os.environ), text=True, capture_output=True,
                          preexec_fn=limited, timeout=60)


def test_a_full_state_dir_stops_the_run_before_anything_is_sent(
        smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, 30)
    job.write_text(job.read_text().replace('text: "Hello {{ name }}"\n', BIG_TEXT))

    done = run_with_file_size_limit(job, 200_000)  # the spool of rendered messages is larger

    assert done.returncode == EXIT_IO, done.stderr
    assert "Traceback" not in done.stderr
    assert "free some disk space" in done.stderr
    assert smtp_server.connections == 0  # nothing sent, not even a login


@settings(max_examples=6, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(limit=st.integers(20_000, 700_000))
def test_a_disk_that_fills_at_any_point_never_leads_to_a_second_copy(
        smtp_server, ca_file, password_env, limit):
    # 40 messages of 3 KB: the spool takes ~130 KB before sending, then the journal's
    # write-ahead log grows with every commit while sending, and the report comes last.
    smtp_server.reset()
    with tempfile.TemporaryDirectory() as tmp:
        job = batch_job(Path(tmp), smtp_server, ca_file, 40, extra="batch: fixed\n")
        job.write_text(job.read_text().replace('text: "Hello {{ name }}"\n',
                                               BIG_TEXT.replace("20000", "3000")))

        done = run_with_file_size_limit(job, limit)

        assert done.returncode in (EXIT_OK, EXIT_PARTIAL, EXIT_TEMPFAIL, EXIT_IO), done.stderr
        assert "Traceback" not in done.stderr
        resumed = run_batch(job)  # the disk has room again

        assert resumed.code in (EXIT_OK, EXIT_PARTIAL), resumed.error
        received = smtp_server.received_count_by_rcpt()
        assert max(received.values()) == 1
        assert {a for a, s in resumed.statuses.items() if s == "sent"} <= set(received)
        assert set(resumed.statuses.values()) <= {"sent", "uncertain"}


def test_an_unwritable_report_folder_is_found_before_sending(
        smtp_server, ca_file, tmp_path, password_env):
    (tmp_path / "blocked").write_text("a file where the report folder should be\n")
    job = batch_job(tmp_path, smtp_server, ca_file, 3, extra='report: "blocked/weekly"\n')

    result = run_batch(job)

    assert result.code == EXIT_IO
    assert "blocked/weekly.json: cannot write the report" in result.error
    assert "nothing was sent" in result.error
    assert smtp_server.connections == 0


def block_reports_after_the_first(folder: Path):
    def progress(done: int, *_: object) -> None:
        if done == 1:
            shutil.rmtree(folder / "reports", ignore_errors=True)
            (folder / "reports").write_text("now a file\n")  # the report cannot be written

    return progress


@pytest.mark.parametrize("ending", ["deferred", "server-gone"])
def test_a_failed_report_write_does_not_replace_the_runs_exit_code_and_both_are_told(
        ending, smtp_server_factory, ca_file, tmp_path, password_env, capsys, monkeypatch):
    server = smtp_server_factory(tempfail_every=1 if ending == "deferred" else None)
    job = batch_job(tmp_path, server, ca_file, 3, timeout=1,
                    retry={"attempts": 2, "backoff": 0.01, "max_backoff": 0.01, "max_time": 5})
    if ending == "server-gone":  # the server goes away after the first message
        threading.Thread(target=lambda: (server.wait_for(1, timeout=20), server.stop()),
                         daemon=True).start()
    # The folder becomes unwritable after the check made before sending (a disk that fills,
    # a folder someone removes): the only way to get there is to skip that check.
    monkeypatch.setattr(runner, "check_writable", lambda report: None)
    (tmp_path / "reports").write_text("a file where the report folder should be\n")

    code, err = run_cli(capsys, str(job))

    lines = err.strip().splitlines()
    assert code == EXIT_TEMPFAIL, err  # what the run says, not 74
    assert any("cannot write" in line and "reports/job-" in line for line in lines), err
    assert lines[-1].startswith("job: batch 2026-"), err  # the summary line comes last
    assert "; report:" not in lines[-1]  # no report to point at
    errors = [line for line in lines if line.startswith("mailbatch: error: ")]
    assert len(errors) == (2 if ending == "server-gone" else 1), err
    if ending == "server-gone":  # the run's own error first, then the report's
        assert "kept failing" in errors[0] and "cannot write" in errors[1], err


@pytest.mark.parametrize(("faults", "expected"), [
    ({}, EXIT_IO),  # all sent: the report failure is what needs fixing
    ({"reject_pattern": "^user2@"}, EXIT_PARTIAL),  # the run's own code says more
])
def test_a_report_that_cannot_be_written_after_a_finished_run_is_an_error(
        faults, expected, smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(**faults)
    job = batch_job(tmp_path, server, ca_file, 3)

    result = run_batch(job, progress=block_reports_after_the_first(tmp_path))

    assert result.code == expected
    assert "cannot write" in result.error
    assert newest_report(tmp_path) is None
    assert server.received_count_by_rcpt() == Counter(
        a for a in addresses(3) if not (faults and a == "user2@example.org"))
