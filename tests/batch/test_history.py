"""A job's batches read back from its journal: read-only, also while a run sends, also from
journals written before runs recorded their end and report."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from mailbatch.batch.history import History, journal_path
from mailbatch.batch.journal import STATUSES
from mailbatch.errors import EXIT_OK, EXIT_PARTIAL, StateError
from mailbatch.job.model import load_job
from tests.batchjobs import BATCH, NOW, batch_job, run_batch, spawn

N = 4


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_job_that_never_ran_has_no_batches_and_looking_creates_nothing(
        smtp_server, ca_file, tmp_path):
    job = load_job(batch_job(tmp_path, smtp_server, ca_file, N))

    with History(job) as history:
        assert history.journal is None
        assert history.batches() == [] and history.batch() is None
        assert list(history.not_sent("anything")) == []

    assert not (tmp_path / ".mailbatch").exists()  # not even the state folder


def test_a_run_records_when_it_ended_and_its_reports_and_history_reads_them(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(reject_pattern="user2@")
    job = batch_job(tmp_path, server, ca_file, N)
    before = dt.datetime.now().astimezone().replace(microsecond=0)

    assert run_batch(job).code == EXIT_PARTIAL

    with History(load_job(job)) as history:
        (record,) = history.batches()
        not_sent = list(history.not_sent(record.batch))
    assert record.batch == BATCH
    assert record.counts == {**dict.fromkeys(STATUSES, 0), "sent": 3, "refused": 1}
    assert record.total == 4 and record.to_send == 0
    assert dt.datetime.fromisoformat(record.started) >= before
    assert record.finished is not None
    assert dt.datetime.fromisoformat(record.finished) >= dt.datetime.fromisoformat(
        record.started)
    assert record.report == str(tmp_path / "reports" / f"job-{BATCH}.json")
    assert record.report_csv == str(tmp_path / "reports" / f"job-{BATCH}.csv")
    assert Path(record.report).is_file()
    (refused,) = not_sent
    assert (refused.index, refused.address, refused.status, refused.code) == (
        1, "user2@example.org", "refused", 550)
    assert "User unknown" in refused.message


def test_batches_are_listed_newest_first_and_the_latest_is_the_default(
        smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, 2)
    assert run_batch(job).code == EXIT_OK
    assert run_batch(job, new_batch=True).code == EXIT_OK
    assert run_batch(job, now=NOW + dt.timedelta(days=1)).code == EXIT_OK

    with History(load_job(job)) as history:
        names = [record.batch for record in history.batches()]
        latest = history.batch()
        named = history.batch(BATCH)
        missing = history.batch("1999-01-01")

    assert names == ["2026-03-03", f"{BATCH}#2", BATCH]
    assert latest is not None and latest.batch == "2026-03-03"
    assert named is not None and named.counts["sent"] == 2
    assert missing is None


def test_reading_changes_nothing_in_the_journal(smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, N)
    assert run_batch(job).code == EXIT_OK
    path = journal_path(load_job(job))
    before = (digest(path), path.stat().st_mtime_ns)

    with History(load_job(job)) as history:
        history.batches()
        list(history.not_sent(BATCH))

    assert (digest(path), path.stat().st_mtime_ns) == before


def test_a_batch_is_read_while_a_run_of_it_is_sending(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(slow_data_reply=(2, 30))
    job = batch_job(tmp_path / "job", server, ca_file, N, timeout=60, extra="batch: fixed\n")
    process = spawn(job)
    try:
        server.wait_for(2, timeout=20)  # the run now waits for the second reply

        with History(load_job(job)) as history:
            record = history.batch()
            not_sent = {e.address: e.status for e in history.not_sent("fixed")}
    finally:
        process.kill()
        process.communicate(timeout=10)

    assert record is not None and record.finished is None  # no run of it has ended
    assert record.counts["sent"] == 1 and record.counts["uncertain"] == 1
    assert not_sent == {"user2@example.org": "uncertain", "user3@example.org": "pending",
                        "user4@example.org": "pending"}


def old_journal(path: Path) -> None:
    """A journal as the first versions wrote it: no clock, no envelope, no run records."""
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE batches (batch TEXT PRIMARY KEY, base TEXT NOT NULL, created TEXT NOT NULL);
        CREATE TABLE deliveries (batch TEXT NOT NULL, key TEXT NOT NULL, idx INTEGER NOT NULL,
            address TEXT NOT NULL, status TEXT NOT NULL, code INTEGER,
            message TEXT NOT NULL DEFAULT '', message_id TEXT NOT NULL DEFAULT '',
            attachments TEXT NOT NULL DEFAULT '[]', attempts INTEGER NOT NULL DEFAULT 0,
            updated TEXT NOT NULL, PRIMARY KEY (batch, key));
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO batches VALUES ('old', 'old', '2025-01-06T07:00:00.000+00:00');
        INSERT INTO deliveries (batch, key, idx, address, status, code, message, updated)
            VALUES ('old', 'a@example.org', 0, 'a@example.org', 'sent', 250, 'OK', 'x'),
                   ('old', 'b@example.org', 1, 'b@example.org', 'failed', 554, 'no', 'x');
    """)
    db.commit()
    db.close()


def test_a_journal_from_before_runs_were_recorded_reads_with_those_unknown(
        smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, 2, extra="batch: fixed\n")
    path = journal_path(load_job(job))
    old_journal(path)
    before = digest(path)

    with History(load_job(job)) as history:
        (record,) = history.batches()
        (failed,) = history.not_sent("old")

    assert (record.batch, record.finished, record.report) == ("old", None, None)
    assert record.counts["sent"] == 1 and record.counts["failed"] == 1
    assert dt.datetime.fromisoformat(record.started) == dt.datetime(2025, 1, 6, 7,
                                                                    tzinfo=dt.UTC)
    assert (failed.address, failed.code, failed.envelope) == ("b@example.org", 554, {})
    assert digest(path) == before  # read, not migrated

    assert run_batch(job).code == EXIT_OK  # a run migrates it, then records itself
    with History(load_job(job)) as history:
        assert [(r.batch, r.finished is not None) for r in history.batches()] == [
            ("fixed", True), ("old", False)]


@pytest.mark.parametrize("damage", ["empty", "foreign-sqlite", "text"])
def test_a_file_that_is_not_a_journal_is_one_clear_error_and_left_alone(
        damage, smtp_server, ca_file, tmp_path):
    job = batch_job(tmp_path, smtp_server, ca_file, 2)
    path = journal_path(load_job(job))
    path.parent.mkdir()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "foreign-sqlite":
        sqlite3.connect(path).execute("CREATE TABLE notes (text TEXT)").connection.close()
    else:
        path.write_text("not a database\n" * 100)
    before = digest(path)

    with pytest.raises(StateError, match="not a valid mailbatch journal"), History(load_job(job)):
        pass

    assert digest(path) == before


def test_the_json_of_a_batch_has_its_documented_keys(smtp_server, ca_file, tmp_path,
                                                     password_env):
    job = batch_job(tmp_path, smtp_server, ca_file, 2)
    assert run_batch(job).code == EXIT_OK

    with History(load_job(job)) as history:
        record = history.batch()
    assert record is not None
    document = json.loads(json.dumps(record.as_json()))

    assert set(document) == {"batch", "started", "finished", "counts", "total", "report",
                             "report_csv"}
    assert set(document["counts"]) == set(STATUSES)
