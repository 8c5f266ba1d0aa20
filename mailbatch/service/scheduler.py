"""The schedule-driven service: runs every job of a folder on its timetable, each in its own thread.

Each run is exactly ``mailbatch run``: ``runner.run(job, RunOptions(stop=...))`` with its lock,
journal and report. A run that fails, even with a bug, is logged and the service goes on; a
job still running when it is due again is not started twice. Job files are re-read when they
change (polled every ``poll`` seconds, or at once on ``request_reload()``, i.e. SIGHUP); a file
that became invalid is reported and its previous valid version keeps its timetable.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import schedule

from mailbatch.batch.report import Report, atomic_file, exit_code_for
from mailbatch.batch.runner import RunOptions, run
from mailbatch.errors import (  # EXIT_SOFTWARE: a run that crashed with a bug
    EXIT_SOFTWARE,
    AlreadyRunningError,
    InterruptedRun,
    MailbatchError,
    StateError,
)
from mailbatch.job.model import Job
from mailbatch.service.notify import send_summary
from mailbatch.service.timing import Clock, TimetableScheduler
from mailbatch.service.watch import Change, JobFile, JobFiles

__all__ = ["EXIT_SOFTWARE", "Entry", "LastRun", "Service"]

log = logging.getLogger(__name__)

RESULTS = {0: "ok", 1: "partial", 75: "incomplete"}
Runner = Callable[[Job, RunOptions], Report]


@dataclass(frozen=True)
class LastRun:
    """The outcome of one run, as the status file and ``--list`` show it."""

    started: str
    finished: str
    result: str  # ok, partial, incomplete, failed, interrupted, skipped, crashed
    exit_code: int
    summary: str
    report: str | None = None


@dataclass
class Entry:
    """A watched job file and what the service does with it: timetable, runs, outcomes."""

    file: JobFile
    scheduled: list[schedule.Job] = field(default_factory=list)
    worker: threading.Thread | None = None
    running_since: dt.datetime | None = None
    last: LastRun | None = None
    overlaps: int = 0  # due while still running, so not started again

    path = property(lambda self: self.file.path)
    name = property(lambda self: self.file.name)
    job = property(lambda self: self.file.job)
    error = property(lambda self: self.file.error)
    timetable = property(lambda self: self.file.timetable)

    @property
    def next_run(self) -> dt.datetime | None:
        runs = [j.next_run for j in self.scheduled if j.next_run is not None]
        return min(runs) if runs else None

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.is_alive()


class Service:
    """Watches ``targets`` (folders and job files) and runs each job when it is due."""

    def __init__(self, targets: Sequence[str | Path], *, status_file: str | Path | None = None,
                 stop: threading.Event | None = None, clock: Clock = dt.datetime.now,
                 poll: float = 10.0, runner: Runner = run) -> None:
        self.files = JobFiles(targets)
        self.targets = self.files.targets
        self.status_file = Path(status_file).absolute() if status_file else None
        self.stop = stop or threading.Event()
        self.clock = clock
        self.poll = poll
        self.runner = runner
        self.scheduler = TimetableScheduler(clock)
        self.entries: dict[Path, Entry] = {}
        self.state = "starting"
        self.started = clock()
        self._results: queue.Queue[tuple[Path, LastRun]] = queue.Queue()
        self._reload_requested = threading.Event()
        self._next_poll = self.started
        self._last_status: dt.datetime | None = None

    # -- job files ---------------------------------------------------------------------------

    def load(self) -> None:
        """The first look at the targets; a target that does not exist is a UsageError."""
        self.files.check_targets()
        self.reload()
        self.state = "running"
        self.write_status(force=True, fatal=True)

    def request_reload(self) -> None:
        """Re-read the job files at the next tick (safe to call from a signal handler)."""
        self._reload_requested.set()

    def reload(self) -> None:
        """Pick up job files added, changed or removed since the last look."""
        self._reload_requested.clear()
        self._next_poll = self.clock() + dt.timedelta(seconds=self.poll)
        for change in self.files.scan():
            self._apply(change)
            self._last_status = None  # write the status at the next tick

    def _apply(self, change: Change) -> None:
        file, path = change.file, change.file.path
        entry = self.entries.get(path)
        if change.kind == "removed":
            if entry is not None:
                self._unschedule(self.entries.pop(path))
            if file.job:
                log.info("%s: no longer scheduled (%s)", file.name, path)
            return
        if entry is None:
            entry = self.entries[path] = Entry(file)
        if change.kind == "invalid":
            keeping = (f"the previous version stays scheduled (next run {_stamp(entry.next_run)})"
                       if file.job else "not scheduled")
            log.error("%s; %s", file.error, keeping)
            return
        assert file.timetable is not None
        if change.reschedule:
            self._unschedule(entry)
            entry.scheduled = self.scheduler.add(
                file.timetable, functools.partial(self._due, path), tag=str(path))
        log.log(logging.DEBUG if self.state == "starting" else logging.INFO,  # cli lists them
                "%s: %s (%s), next run %s", file.name,
                "scheduled" if change.kind == "added" else "reloaded", file.timetable.text,
                _stamp(entry.next_run))

    def _unschedule(self, entry: Entry) -> None:
        for scheduled in entry.scheduled:
            self.scheduler.cancel_job(scheduled)
        entry.scheduled = []

    # -- running -----------------------------------------------------------------------------

    def tick(self) -> None:
        """One pass: reload if due, start the jobs that are due, collect finished runs."""
        if self._reload_requested.is_set() or self.clock() >= self._next_poll:
            self.reload()
        self.collect()
        if not self.stop.is_set():
            self.scheduler.run_pending()
        self.write_status()

    def serve(self) -> None:
        """Tick until ``stop`` is set, then let running batches finish and commit."""
        try:
            while not self.stop.is_set():
                self.tick()
                idle = self.scheduler.idle_seconds
                self.stop.wait(1.0 if idle is None else min(1.0, max(0.01, idle)))
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        self.stop.set()
        self.state = "stopping"
        running = [e for e in self.entries.values() if e.running]
        if running:
            log.warning("stopping: waiting for %s to finish the message in flight",
                        ", ".join(e.name for e in running))
        self.write_status(force=True)
        self.wait_idle()
        self.state = "stopped"
        self.write_status(force=True)
        log.info("stopped")

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until no run is in progress, then record their outcomes."""
        for entry in list(self.entries.values()):
            if entry.worker is not None:
                entry.worker.join(timeout)
        self.collect()

    def _due(self, path: Path) -> Any:
        """Called by ``schedule`` in the service's thread: start the run in a worker thread."""
        entry = self.entries.get(path)
        if entry is None or entry.job is None:
            return schedule.CancelJob
        if self.stop.is_set():
            return None
        if entry.running:
            entry.overlaps += 1
            log.warning("%s: due again but still running since %s; not starting it twice",
                        entry.name, _stamp(entry.running_since))
            self._last_status = None
            return None
        entry.running_since = self.clock()
        entry.worker = threading.Thread(target=self._run, args=(path, entry.job),
                                        name=f"mailbatch {entry.name}", daemon=True)
        entry.worker.start()
        self._last_status = None
        return None

    def _run(self, path: Path, job: Job) -> None:
        """One run in a worker thread: whatever happens, log one line and report the outcome."""
        started, began = self.clock(), time.monotonic()
        report: Report | None = None
        error: BaseException | None = None
        try:
            report = self.runner(job, RunOptions(stop=self.stop))
            code = exit_code_for(report)
            result, summary = RESULTS.get(code, "failed"), report.summary()
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
        self._results.put((path, LastRun(
            started=_stamp(started), finished=_stamp(self.clock()), result=result,
            exit_code=code, summary=first,
            report=str(report.json_path) if report and report.json_path else None)))
        if not isinstance(error, AlreadyRunningError):  # still "running": no overlap meanwhile
            send_summary(job, report, error)

    def collect(self) -> None:
        """Record the outcomes that finished runs have reported."""
        while True:
            try:
                path, last = self._results.get_nowait()
            except queue.Empty:
                return
            entry = self.entries.get(path)
            if entry is not None:
                entry.last = last
            self._last_status = None

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What the status file says: the service is alive, and each job's last and next run."""
        now = self.clock()
        return {
            "service": {"pid": os.getpid(), "state": self.state, "started": _stamp(self.started),
                        "heartbeat": _stamp(now), "poll_seconds": self.poll,
                        "watching": [str(t) for t in self.targets]},
            "jobs": [{
                "name": e.name, "file": str(e.path),
                "schedule": e.timetable.text if e.timetable else None,
                "next_run": _stamp(e.next_run), "running": e.running,
                "running_since": _stamp(e.running_since) if e.running else None,
                "overlaps_skipped": e.overlaps,
                "file_error": e.error, "last_run": asdict(e.last) if e.last else None,
            } for e in self.sorted_entries()],
        }

    def sorted_entries(self) -> list[Entry]:
        return sorted(self.entries.values(), key=lambda e: (e.name, str(e.path)))

    def write_status(self, *, force: bool = False, fatal: bool = False) -> None:
        """Write the status file atomically when something changed, or as a heartbeat."""
        if self.status_file is None:
            return
        now = self.clock()
        if not force and self._last_status is not None and \
                now - self._last_status < dt.timedelta(seconds=self.poll):
            return
        self._last_status = now
        try:
            with atomic_file(self.status_file) as file:
                file.write(json.dumps(self.status(), indent=2) + "\n")
        except OSError as err:
            message = f"{self.status_file}: cannot write the status file: {err.strerror or err}"
            if fatal:
                raise StateError(message + "; check the folder is writable") from None
            log.error("%s", message)


def _stamp(moment: dt.datetime | None) -> str | None:
    """A naive local time (as ``schedule`` keeps them) as ISO 8601 with its UTC offset."""
    return moment.astimezone().isoformat(timespec="seconds") if moment else None
