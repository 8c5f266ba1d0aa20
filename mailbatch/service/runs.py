"""A job's runs as the scheduler makes them, in a worker thread: unfinished batches first.

- A **due run** is ``mailbatch run``. If an older batch of the job still has recipients to
  send, the runner refuses to start a new one (UnfinishedBatchError); then the older
  batches are finished first, late, oldest first, each with the dates it began with, and
  this period's batch runs after them, even if an older one could not be finished (its
  owner is told): a batch that can never finish must not stop every later one.
- A **resume** (at start, after a reload) finishes every unfinished batch, in its own
  period or late, and starts none.

Each run is one log line, and its outcome goes to the owner through the ``Notifier``
(once per change). Nothing a run does, not even a bug, escapes from here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailbatch.batch.journal import BatchInfo, Journal
from mailbatch.batch.report import Report, exit_code_for
from mailbatch.batch.runner import RunOptions
from mailbatch.errors import (
    EXIT_ALREADY_RUNNING,
    EXIT_FAILURES,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_NOPERM,
    EXIT_SOFTWARE,
    EXIT_TEMPFAIL,
    EXIT_UNAVAILABLE,
    AlreadyRunningError,
    InterruptedRun,
    MailbatchError,
    UnfinishedBatchError,
)
from mailbatch.job.model import Job
from mailbatch.message.render import Renderer
from mailbatch.service.notify import Notifier
from mailbatch.service.status import LastRun, stamp
from mailbatch.service.timing import Clock

__all__ = ["JobRuns", "Runner", "unfinished_batches"]

log = logging.getLogger(__name__)

RESULTS = {0: "ok", 1: "partial", 75: "incomplete"}
# A run that was stopped by one of these errors ends the sequence: the next batch would fail
# the same way (server, login, disk, a server refusing every message: max_failures) or must
# not start now (stopped; another run holds the job). A batch that merely ended with
# recipients deferred (exit 75 from its counts) does not: it must not hold back every later
# batch.
STOPPERS = frozenset({EXIT_ALREADY_RUNNING, EXIT_INTERRUPTED, EXIT_UNAVAILABLE, EXIT_TEMPFAIL,
                      EXIT_NOPERM, EXIT_IO, EXIT_FAILURES})


Runner = Callable[[Job, RunOptions], Report]


def _stops(run: LastRun) -> bool:
    return run.result != "incomplete" and run.exit_code in STOPPERS


def unfinished_batches(job: Job) -> list[BatchInfo]:
    """The job's batches that still have recipients to send, oldest first, read without
    writing anything (safe while a run of the job holds the journal)."""
    assert job.state_dir is not None
    path = job.state_dir / f"{job.name}.sqlite"
    if not path.exists():
        return []
    with Journal.reader(path) as journal:
        return journal.unfinished()[::-1]


@dataclass
class JobRuns:
    """The runs of one job for one occasion (due, or resume); one instance per worker."""

    job: Job
    runner: Runner
    stop: threading.Event
    clock: Clock
    notifier: Notifier

    def due(self) -> LastRun | None:
        """The job's run at its time; older unfinished batches first, if there are any."""
        first = self._attempt(RunOptions(), unfinished_first=True)
        if first is not None:
            return first
        try:
            older = unfinished_batches(self.job)
        except MailbatchError as err:
            return self._failed(err)
        runs: list[LastRun | None] = []
        for info in older:
            log.warning("%s: batch %s still has %d recipient(s) to send; finishing it late, "
                        "before this period's batch, with the dates it began with",
                        self.job.name, info.batch, info.to_send)
            runs.append(last := self._attempt(RunOptions(batch=info.batch)))
            if last is None or _stops(last) or self.stop.is_set():
                return _outcome(runs)
        runs.append(self._attempt(RunOptions(leave_unfinished=True)))
        return _outcome(runs)

    def resume(self, batches: list[BatchInfo]) -> LastRun | None:
        """Finish ``batches`` (oldest first): interrupted, they would wait for the next due
        run (tomorrow, next week), or never be sent if that starts a new batch."""
        current = self._current_batch()
        runs: list[LastRun | None] = []
        for info in batches:
            if self.stop.is_set():
                break
            if current is None or info.base == current:
                log.warning("%s: batch %s was interrupted with %d recipient(s) still to send; "
                            "resuming it now", self.job.name, info.batch, info.to_send)
            else:
                log.warning("%s: batch %s was interrupted with %d recipient(s) still to send "
                            "and its period is over (this period's batch is %s); finishing it "
                            "late now, with the dates it began with", self.job.name,
                            info.batch, info.to_send, current)
            runs.append(last := self._attempt(RunOptions(batch=info.batch)))
            if last is None or _stops(last):
                break
        return _outcome(runs) if runs else None

    def _current_batch(self) -> str | None:
        """The batch a run now would start or resume; None if the job cannot tell (its
        ``batch:`` fails to render: the run will say why)."""
        try:
            return Renderer(self.job, self.clock().astimezone()).batch
        except Exception:
            return None

    def _attempt(self, options: RunOptions, unfinished_first: bool = False) -> LastRun | None:
        """One run, whatever happens: one log line, the owner told (once per change), and
        its outcome. None (nothing logged) if ``unfinished_first`` and an older batch must
        be finished first."""
        options.stop = self.stop
        options.now = self.clock().astimezone()  # the service's clock names the batch
        job, started, began = self.job, self.clock(), time.monotonic()
        report: Report | None = None
        error: BaseException | None = None
        try:
            report = self.runner(job, options)
            code = exit_code_for(report)
            result, summary = RESULTS.get(code, "failed"), report.summary()
        except UnfinishedBatchError as err:
            if unfinished_first:
                return None
            error, code, result, summary = err, err.exit_code, "failed", str(err)
        except AlreadyRunningError as err:  # e.g. a cron run of the same job
            error, code, result, summary = err, err.exit_code, "skipped", str(err)
        except MailbatchError as err:
            error, code, summary = err, err.exit_code, str(err)
            result = "interrupted" if isinstance(err, InterruptedRun) else "failed"
            report = getattr(err, "report", None)
        except Exception as err:  # a bug: log it in full and keep the service running
            log.exception("%s: the run crashed; other jobs are not affected", job.name)
            error, code, result = err, EXIT_SOFTWARE, "crashed"
            summary = f"{type(err).__name__}: {err}"
        first, *more = summary.splitlines() or [""]
        if more:
            log.error("%s", summary)
        level = logging.INFO if code == 0 else logging.ERROR if result in (
            "failed", "crashed") else logging.WARNING
        log.log(level, "%s: %s (exit %d) after %.1fs: %s", job.name, result, code,
                time.monotonic() - began, first)
        self.notifier.after_run(job, report, error)
        return LastRun(started=stamp(started) or "", finished=stamp(self.clock()) or "",
                       result=result, exit_code=code, summary=first,
                       report=str(report.json_path) if report and report.json_path else None)

    def _failed(self, err: MailbatchError) -> LastRun:
        log.error("%s: failed (exit %d): %s", self.job.name, err.exit_code, err)
        now = stamp(self.clock()) or ""
        return LastRun(started=now, finished=now, result="failed", exit_code=err.exit_code,
                       summary=str(err))


def _outcome(runs: list[LastRun | None]) -> LastRun | None:
    """What the status file shows for several runs at once: the first that did not end
    well (a monitor must see it), or else the last."""
    done = [run for run in runs if run is not None]
    return next((run for run in done if run.exit_code != 0), done[-1] if done else None)
