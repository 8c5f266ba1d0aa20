"""Two runs that both believe they hold the job's lock (its file was deleted under one of
them) still send nobody a message twice: every state change in the journal is made only
from the state the run left the recipient in, and a run that finds another state stops."""

from __future__ import annotations

import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbatch.batch import runner
from mailbatch.batch.journal import Journal
from mailbatch.errors import EXIT_IO, EXIT_OK, EXIT_PARTIAL, EXIT_TEMPFAIL, StateError
from tests.batchjobs import addresses, batch_job, run_batch

RETRY = {"attempts": 6, "backoff": 0.001, "max_backoff": 0.005, "max_time": 30}


@contextmanager
def no_lock(path: Path, job_name: str) -> Iterator[None]:
    yield None  # what a run gets when another run's lock file was deleted


def test_a_state_change_from_a_state_the_run_did_not_leave_stops_the_run(tmp_path):
    with Journal(tmp_path / "j.sqlite") as journal:
        batch = journal.create("b", __import__("datetime").datetime.now().astimezone())
        journal.register(batch, "k", 0, "a@example.org", "<1@x>", [])
        journal.mark(batch, "k", "uncertain", expect=("pending", "deferred"))
        with pytest.raises(StateError, match="k is uncertain, not pending or deferred"):
            journal.mark(batch, "k", "uncertain", expect=("pending", "deferred"))
        journal.mark(batch, "k", "sent", 250, "ok", expect=("uncertain",))
        with pytest.raises(StateError, match="another run"):
            journal.mark(batch, "k", "pending", expect=("uncertain",))
        assert journal.status(batch, "k") == "sent"


@settings(max_examples=12, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(n=st.integers(3, 12), tempfail=st.none() | st.integers(2, 4),
       slow=st.none() | st.tuples(st.integers(1, 3), st.sampled_from([0.01, 0.05])),
       pipelining=st.booleans())
def test_two_runs_of_one_batch_at_once_deliver_each_recipient_at_most_once(
        module_smtp_server, ca_file, monkeypatch, n, tempfail, slow, pipelining):
    module_smtp_server.reset()
    module_smtp_server.set_faults(tempfail_every=tempfail, slow_data_reply=slow)
    module_smtp_server.pipelining = pipelining
    monkeypatch.setattr(runner, "job_lock", no_lock)
    with tempfile.TemporaryDirectory() as tmp:
        job = batch_job(Path(tmp), module_smtp_server, ca_file, n, retry=RETRY,
                        extra="batch: fixed\n")
        outcomes: list = []
        start = threading.Barrier(2)

        def one_run() -> None:
            start.wait()
            outcomes.append(run_batch(job))

        threads = [threading.Thread(target=one_run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

        assert max(module_smtp_server.received_count_by_rcpt().values(), default=0) <= 1
        for outcome in outcomes:
            assert outcome.code in (EXIT_OK, EXIT_PARTIAL, EXIT_TEMPFAIL, EXIT_IO), outcome.error
            if outcome.code == EXIT_IO:
                assert "another run" in outcome.error, outcome.error

        module_smtp_server.set_faults(tempfail_every=None, slow_data_reply=None)
        final = run_batch(job)

        received = module_smtp_server.received_count_by_rcpt()
        assert max(received.values()) == 1
        assert set(final.statuses.values()) <= {"sent", "uncertain"}
        assert {a for a, s in final.statuses.items() if s == "sent"} <= set(received)
        assert set(received) <= set(addresses(n))
    module_smtp_server.pipelining = True
    assert Counter(received)  # something was delivered
