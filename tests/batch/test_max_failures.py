"""smtp.max_failures: a batch whose messages keep failing for good stops with the rest pending
(exit 5) instead of marking everyone refused, failed or uncertain, none of which a resume
would send."""

from __future__ import annotations

from collections import Counter

import pytest

from mailbatch.errors import EXIT_FAILURES, EXIT_OK, EXIT_PARTIAL, JobError
from mailbatch.job.model import load_job
from mailbatch.job.smtpsettings import FailureLimit
from tests.batchjobs import addresses, batch_job, run_batch
from tests.pipeline import offline_job


def test_a_server_slower_than_the_timeout_stops_the_batch_after_ten_uncertain_in_a_row(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(slow_data_reply=(1, 1.0))
    job = batch_job(tmp_path, server, ca_file, 25, timeout=0.4)

    result = run_batch(job)

    assert result.code == EXIT_FAILURES
    assert "10 messages in a row were refused, failed or left uncertain" in result.error
    assert "smtp.max_failures" in result.error
    assert result.counts == Counter(uncertain=10, pending=15)
    assert result.report["error"] == result.error  # the report says why
    assert 10 <= server.connections < 25  # a timeout ends a session: one each, not 25

    server.set_faults(slow_data_reply=None)  # the server is fixed: the resume sends the rest
    resumed = run_batch(job)

    assert resumed.code == EXIT_PARTIAL  # the ten stay uncertain
    assert resumed.counts == Counter(uncertain=10, sent=15)
    assert server.received_count_by_rcpt() == Counter(addresses(25))


def test_refusals_in_a_row_stop_the_batch_and_a_sent_message_starts_the_count_again(
        smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(reject_pattern="bad")
    listed = [*addresses(2, "bad"), "ok1@example.org", *addresses(3, "also-bad"),
              "ok2@example.org", *addresses(5, "worse-bad")]
    job = batch_job(tmp_path, server, ca_file, listed, max_failures=3)

    result = run_batch(job)

    assert result.code == EXIT_FAILURES
    assert result.counts == Counter(refused=2 + 3, sent=1, pending=6)
    assert list(result.statuses.values())[:7] == ["refused"] * 2 + ["sent"] + ["refused"] * 3 \
        + ["pending"]


def test_in_all_counts_failures_across_the_run(smtp_server_factory, ca_file, tmp_path,
                                               password_env):
    server = smtp_server_factory(reject_pattern="^bad")
    listed = [a for i in range(1, 6) for a in (f"bad{i}@example.org", f"ok{i}@example.org")]
    job = batch_job(tmp_path, server, ca_file, listed,
                    max_failures={"in_a_row": 0, "in_all": 3})

    result = run_batch(job)

    assert result.code == EXIT_FAILURES
    assert "3 messages in this run" in result.error
    assert result.counts == Counter(refused=3, sent=2, pending=5)


def test_max_failures_zero_never_stops(smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(reject_pattern="^user")
    job = batch_job(tmp_path, server, ca_file, 12, max_failures=0)

    result = run_batch(job)

    assert result.code == EXIT_PARTIAL
    assert result.counts == Counter(refused=12)


@pytest.mark.parametrize(("value", "expected"), [
    (None, FailureLimit(in_a_row=10, in_all=0)),
    ("4", FailureLimit(in_a_row=4, in_all=0)),
    ("0", FailureLimit(in_a_row=0, in_all=0)),
    ("{in_all: 50}", FailureLimit(in_a_row=10, in_all=50)),
    ("{in_a_row: 0, in_all: 7}", FailureLimit(in_a_row=0, in_all=7)),
])
def test_max_failures_is_a_number_in_a_row_or_a_mapping(value, expected, tmp_path):
    extra = f"  max_failures: {value}\n" if value is not None else ""
    job = offline_job(tmp_path, 'from: "a@example.org"\nsubject: s\ntext: t\n'
                      'recipients: [{email: b@example.org}]\n')
    job.write_text(job.read_text() + extra)

    assert load_job(job).smtp.max_failures == expected


@pytest.mark.parametrize("value", ["-1", "{in_all: -2}", "{in_row: 3}", "yes", "[1]"])
def test_a_bad_max_failures_names_the_key(value, tmp_path):
    job = offline_job(tmp_path, 'from: "a@example.org"\nsubject: s\ntext: t\n'
                      'recipients: [{email: b@example.org}]\n')
    job.write_text(job.read_text() + f"  max_failures: {value}\n")

    with pytest.raises(JobError, match=r"smtp\.max_failures"):
        load_job(job)


def test_a_dry_run_never_stops_for_failures(tmp_path):
    job = offline_job(tmp_path, 'from: "a@example.org"\nsubject: s\ntext: t\n'
                      'recipients: [{email: b@example.org}]\n')

    assert run_batch(job, dry_run=True).code == EXIT_OK
