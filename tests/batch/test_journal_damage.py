"""A journal that was truncated, replaced or lost is refused, never taken for a fresh start:
a run on it would send every recipient a second copy."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbatch.errors import EXIT_IO, EXIT_OK
from tests.batchjobs import BATCH, addresses, batch_job, run_batch
from tests.helpers import PASSWORD_ENV
from tests.smtpserver import PASSWORD, SmtpTestServer

N = 4


def journal_of(job: Path) -> Path:
    return job.parent / ".mailbatch" / "job.sqlite"


@pytest.mark.parametrize("damage", ["empty", "empty-sqlite", "foreign-sqlite", "text"])
def test_a_journal_that_is_not_a_mailbatch_journal_is_refused_and_nothing_is_sent(
        damage, smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, N)
    assert run_batch(job).code == EXIT_OK
    smtp_server.reset()
    path = journal_of(job)
    for extra in ("-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)
    path.unlink()
    if damage == "empty":
        path.write_bytes(b"")  # truncated to 0 bytes
    elif damage == "empty-sqlite":
        sqlite3.connect(path).execute("PRAGMA user_version = 1").connection.close()
    elif damage == "foreign-sqlite":
        sqlite3.connect(path).execute("CREATE TABLE notes (text TEXT)").connection.close()
    else:
        path.write_text("not a database\n" * 100)

    again = run_batch(job)

    assert again.code == EXIT_IO
    assert "not a valid mailbatch journal" in again.error
    assert smtp_server.connections == 0
    assert path.exists()  # left as it was found, for whoever investigates


def test_a_lost_journal_is_found_from_the_batchs_report_and_refused(
        smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, N)
    assert run_batch(job).code == EXIT_OK
    shutil.rmtree(tmp_path / ".mailbatch")  # deleted, with its -wal and -shm
    report = tmp_path / "reports" / f"job-{BATCH}.json"
    before = report.read_bytes()

    again = run_batch(job)

    assert again.code == EXIT_IO
    assert f"lists {N} recipient(s) as sent" in again.error
    assert "--new-batch" in again.error
    assert smtp_server.received_count_by_rcpt() == Counter(addresses(N))  # once each
    assert report.read_bytes() == before  # the evidence is kept

    anyway = run_batch(job, new_batch=True)

    assert anyway.code == EXIT_OK
    assert anyway.report["batch"] == f"{BATCH}#2"  # not over the lost batch's report
    assert report.read_bytes() == before
    assert smtp_server.received_count_by_rcpt() == Counter(addresses(N) * 2)


def test_a_report_without_anything_sent_does_not_block_a_new_journal(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(reject_pattern="^user")  # every recipient refused
    job = batch_job(tmp_path, server, ca_file, 2)
    run_batch(job)
    shutil.rmtree(tmp_path / ".mailbatch")

    assert run_batch(job).report["counts"]["refused"] == 2  # nothing sent: nothing to repeat


@pytest.fixture(scope="module")
def sent_batch(ca, tmp_path_factory) -> Path:
    """A finished batch's folder (journal, report), made once and copied per example; its
    job file is removed, so each copy's job file takes the journal over (as after a move)."""
    folder = tmp_path_factory.mktemp("sent")
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    saved = os.environ.get(PASSWORD_ENV)
    os.environ[PASSWORD_ENV] = PASSWORD
    try:
        with SmtpTestServer(ca) as server:
            job = batch_job(folder / "job", server, ca_file, N)
            assert run_batch(job).code == EXIT_OK
    finally:
        if saved is None:
            os.environ.pop(PASSWORD_ENV, None)
        else:
            os.environ[PASSWORD_ENV] = saved
    job.unlink()
    return folder


@settings(max_examples=20, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_truncation_or_replacement_of_the_journal_makes_a_run_send_anyone_again(
        sent_batch, smtp_server, password_env, data):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "copy"
        shutil.copytree(sent_batch, folder)
        job = batch_job(folder / "job", smtp_server, folder / "ca.pem", N)  # this server
        path = journal_of(job)
        content = path.read_bytes()
        how = data.draw(st.sampled_from(["truncate", "header", "replace", "delete"]))
        if how == "truncate":
            path.write_bytes(content[:data.draw(st.integers(0, len(content) - 1))])
        elif how == "header":  # SQLite's own header (the first 100 bytes) damaged
            at = data.draw(st.integers(0, 99))
            junk = data.draw(st.binary(min_size=1, max_size=100 - at))
            path.write_bytes(content[:at] + junk + content[at + len(junk):])
        elif how == "replace":
            path.write_bytes(data.draw(st.binary(max_size=4096)))
        else:
            path.unlink()
        smtp_server.reset()

        result = run_batch(job)

        assert smtp_server.messages == [], (how, result.code, result.error)
        assert result.code in (EXIT_OK, EXIT_IO), result.error


def test_a_state_dir_without_hard_links_still_gets_a_journal_and_a_rerun_sends_nobody_again(
        smtp_server, ca_file, tmp_path, password_env, monkeypatch):
    # FAT, exFAT and some network shares refuse link(2); the journal is then moved into
    # place (the job's lock keeps other runs out meanwhile). A fault no test file system
    # here produces, so os.link is made to fail.
    import mailbatch.batch.journalfile as journalfile

    def no_links(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(journalfile.os, "link", no_links)
    job = batch_job(tmp_path, smtp_server, ca_file, N)

    first = run_batch(job)
    again = run_batch(job)

    assert first.code == EXIT_OK, first.error
    assert again.code == EXIT_OK, again.error
    assert len(smtp_server.messages) == N
    assert not [p for p in journal_of(job).parent.iterdir() if p.name.endswith(".new")]
