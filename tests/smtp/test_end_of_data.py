"""After the final ".", only a 4xx or 5xx says "not taken": anything else is uncertain."""

from __future__ import annotations

from collections import Counter

import pytest

from mailbatch.errors import EXIT_OK, EXIT_PARTIAL
from tests.batchjobs import addresses, batch_job, run_batch

ODD = ["200 ok", "354 go ahead", "hello there", "2.0.0 queued", "600 what"]


@pytest.mark.parametrize("reply", ODD)
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-at-a-time"])
def test_a_reply_to_the_end_of_data_that_is_no_verdict_is_uncertain_and_never_sent_again(
        reply, pipelining, smtp_server_factory, ca_file, tmp_path, password_env):
    server = smtp_server_factory(data_reply=(2, reply), pipelining=pipelining)
    job = batch_job(tmp_path, server, ca_file, 3, timeout=1)

    first = run_batch(job)

    assert first.code == EXIT_PARTIAL, first.error
    assert first.statuses == {**dict.fromkeys(addresses(3), "sent"),
                              "user2@example.org": "uncertain"}
    row = next(r for r in first.report["recipients"] if r["address"] == "user2@example.org")
    assert "says neither accepted nor refused" in row["message"] or "connection lost" in \
        row["message"]
    assert server.received_count_by_rcpt() == Counter(addresses(3))  # each stored once

    server.set_faults(data_reply=None)
    again = run_batch(job)

    assert again.code == EXIT_PARTIAL
    assert server.received_count_by_rcpt() == Counter(addresses(3))  # nothing sent again


@pytest.mark.parametrize("fault", [{"tempfail_every": 2}, {"reject_pattern": "^user2@"}],
                         ids=["451", "550-at-rcpt"])
def test_only_a_4xx_or_5xx_means_not_taken(fault, smtp_server_factory, ca_file, tmp_path,
                                           password_env):
    server = smtp_server_factory(**fault)
    job = batch_job(tmp_path, server, ca_file, 3)

    result = run_batch(job)

    if "tempfail_every" in fault:
        assert result.code == EXIT_OK, result.error  # retried, then sent
        assert server.received_count_by_rcpt() == Counter(addresses(3))
    else:
        assert result.statuses["user2@example.org"] == "refused"
        assert server.received_count_by_rcpt() == Counter(["user1@example.org",
                                                           "user3@example.org"])
