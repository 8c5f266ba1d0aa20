"""The schedule-driven service: runs every job of a folder on its timetable, each in its own thread.

Each run is exactly ``mailbatch run`` (lock, journal, report; see runs.py for the order in
which unfinished batches are finished). A run that fails, even with a bug, is logged and the
service goes on; a job still running when it is due again is not started twice. Job files are
re-read when they change (every ``poll`` seconds, or at once on ``request_reload()``, i.e.
SIGHUP); whatever reading one raises is that file's error, and its previous valid version keeps
its timetable. At start and after a reload, each job's unfinished batches are finished.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import schedule

from mailbatch.batch.journal import BatchInfo
from mailbatch.batch.runner import run
from mailbatch.job.model import Job
from mailbatch.service.notify import Notifier
from mailbatch.service.runs import JobRuns, Runner, unfinished_batches
from mailbatch.service.status import LastRun, read_previous, stamp, write_status
from mailbatch.service.timing import Clock, TimetableScheduler, system_clock
from mailbatch.service.wakeup import Wakeup, WakingEvent
from mailbatch.service.watch import Change, JobFile, JobFiles, unexpected

__all__ = ["Entry", "LastRun", "Service"]

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """A watched job file and what the service does with it: timetable, runs, outcomes."""

    file: JobFile
    scheduled: list[schedule.Job] = field(default_factory=list)
    worker: threading.Thread | None = None
    running_since: dt.datetime | None = None
    last: LastRun | None = None
    overlaps: int = 0  # due while still running, so not started again
    look: bool = False  # look for unfinished batches once the job is not running

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
    """Watches ``targets`` (folders and job files) and runs each job when it is due.

    ``clock`` gives aware datetimes; ``zone`` is the zone of timetables written without one
    (default: the machine's).
    """

    def __init__(self, targets: Sequence[str | Path], *, status_file: str | Path | None = None,
                 clock: Clock = system_clock, poll: float = 10.0, runner: Runner = run,
                 zone: dt.tzinfo | None = None) -> None:
        self.files = JobFiles(targets)
        self.targets = self.files.targets
        self.status_file = Path(status_file).absolute() if status_file else None
        self.stop = WakingEvent(self._wake)  # shared with every run: SIGTERM, Ctrl-C
        self.clock = clock
        self.poll = poll
        self.runner = runner
        self.scheduler = TimetableScheduler(clock, zone)
        self.notifier = Notifier()
        self.entries: dict[Path, Entry] = {}
        self.state = "starting"
        self.started = clock()
        self._results: queue.Queue[tuple[Path, LastRun | None]] = queue.Queue()
        self._reload_requested = False  # a plain flag: set from a signal handler
        self._wakeup: Wakeup | None = None
        self._next_poll = self.started
        self._last_status: dt.datetime | None = None
        self._previous = read_previous(self.status_file)
        self._scan_error: str | None = None
        self._tick_error: str | None = None

    # -- job files ---------------------------------------------------------------------------

    def load(self) -> None:
        """The first look at the targets; a target that does not exist is a UsageError."""
        self.files.check_targets()
        self.reload()
        self.state = "running"
        self.write_status(force=True, fatal=True)

    def request_reload(self) -> None:
        """Re-read the job files now (safe to call from a signal handler or any thread)."""
        self._reload_requested = True
        self._wake()

    def reload(self) -> None:
        """Pick up job files added, changed or removed; after an explicit reload (SIGHUP),
        look again for every job's unfinished batches."""
        explicit, self._reload_requested = self._reload_requested, False
        self._next_poll = self.clock() + dt.timedelta(seconds=self.poll)
        try:
            changes = self.files.scan()
            self._scan_error = None
        except Exception as err:  # a bug: said once, tried again at the next look
            if str(err) != self._scan_error:
                log.exception("cannot look at the job files; the jobs stay as they were")
            self._scan_error, changes = str(err), []
        for change in changes:
            try:
                self._apply(change)
            except Exception as err:  # a bug: still only this file's problem
                log.exception("%s: cannot be scheduled", change.file.path)
                change.file.error = unexpected(change.file.path, err)
            self._last_status = None  # write the status at the next tick
        if explicit:
            for entry in self.entries.values():
                entry.look = True

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
            entry = self.entries[path] = self._new_entry(file)
        if change.kind == "invalid":
            keeping = (f"the previous version stays scheduled (next run {stamp(entry.next_run)})"
                       if file.job else "not scheduled")
            log.error("%s; %s", file.error, keeping, exc_info=change.crash)
            return
        assert file.timetable is not None
        if change.reschedule:
            scheduled = self.scheduler.add(file.timetable, functools.partial(self._due, path),
                                           tag=str(path))
            self._unschedule(entry)
            entry.scheduled = scheduled
        entry.look = True  # new or changed: its unfinished batches are looked for
        log.log(logging.DEBUG if self.state == "starting" else logging.INFO,  # cli lists them
                "%s: %s (%s), next run %s", file.name,
                "scheduled" if change.kind == "added" else "reloaded", file.timetable.text,
                stamp(entry.next_run))

    def _new_entry(self, file: JobFile) -> Entry:
        """A job file seen for the first time: what a previous service said of it stays."""
        entry = Entry(file)
        previous = self._previous.pop(file.path, None)
        if previous is not None:
            entry.last = previous.last_run
            self.notifier.restore(file.path, previous.told)
        return entry

    def _unschedule(self, entry: Entry) -> None:
        for scheduled in entry.scheduled:
            self.scheduler.cancel_job(scheduled)
        entry.scheduled = []

    # -- running -----------------------------------------------------------------------------

    def tick(self) -> None:
        """One pass: reload if due, collect finished runs, start the runs that are due and
        the unfinished batches found."""
        if self._reload_requested or self.clock() >= self._next_poll:
            self.reload()
        self.collect()
        if not self.stop.is_set():
            self.scheduler.run_pending()
            self._look_for_unfinished()
        self.write_status()

    def serve(self) -> None:
        """Tick until ``stop`` is set, then let running batches finish and commit."""
        try:
            with Wakeup() as wakeup:
                self._wakeup = wakeup
                try:
                    while not self.stop.is_set():
                        try:
                            self.tick()
                            sleep = self._sleep()
                        except Exception as err:  # a bug of the service's own: not its end
                            if str(err) != self._tick_error:
                                log.exception("the service's loop failed; trying again")
                            self._tick_error, sleep = str(err), 1.0
                        wakeup.wait(sleep)
                finally:
                    self._wakeup = None
        finally:
            self.shutdown()

    def _sleep(self) -> float:
        """Seconds until there is something to do: a job due, a look at the files, a
        heartbeat; anything sooner (a signal, a run ending) wakes the loop."""
        now = self.clock()
        until = [(self._next_poll - now).total_seconds(), self.poll]
        if self.scheduler.idle_seconds is not None:
            until.append(self.scheduler.idle_seconds)
        if self.status_file is not None:
            beat = self._last_status + dt.timedelta(seconds=self.poll) \
                if self._last_status else now
            until.append((beat - now).total_seconds())
        return max(0.0, min(until))

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            wakeup.set()

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
                        entry.name, stamp(entry.running_since))
            self._last_status = None
            return None
        try:
            self._start(entry, "run", lambda runs: runs.due())
        except Exception:  # e.g. no thread can be started now: the next due time tries again
            log.exception("%s: cannot start the run", entry.name)
        return None

    def _look_for_unfinished(self) -> None:
        """Start a resume for each job that has unfinished batches (looked for at start, and
        after a change or reload, once the job is not running)."""
        for entry in self.sorted_entries():
            if not entry.look or entry.running or entry.job is None:
                continue
            entry.look = False
            try:
                batches = unfinished_batches(entry.job)
                if batches:
                    self._start(entry, "resume", functools.partial(_resume, batches=batches))
            except Exception as err:  # an unreadable journal: the next run will say why
                log.warning("%s: cannot look for unfinished batches: %s", entry.name, err)

    def _start(self, entry: Entry, what: str, work: Callable[[JobRuns], LastRun | None]) -> None:
        job = entry.job
        assert job is not None
        runs = JobRuns(job, self.runner, self.stop, self.clock, self.notifier)
        worker = threading.Thread(target=self._work, args=(entry.path, job, work, runs),
                                  name=f"mailbatch {what} {entry.name}", daemon=True)
        worker.start()
        entry.worker, entry.running_since = worker, self.clock()
        self._last_status = None

    def _work(self, path: Path, job: Job, work: Callable[[JobRuns], LastRun | None],
              runs: JobRuns) -> None:
        """A worker thread: the runs, then their outcome to the service's thread."""
        last = None
        try:
            last = work(runs)
        except Exception:  # JobRuns catches every run's errors; this would be its own bug
            log.exception("%s: the run crashed; other jobs are not affected", job.name)
        finally:
            self._results.put((path, last))
            self._wake()

    def collect(self) -> None:
        """Record the outcomes that finished runs have reported."""
        while True:
            try:
                path, last = self._results.get_nowait()
            except queue.Empty:
                return
            entry = self.entries.get(path)
            if entry is not None and last is not None:
                entry.last = last
            self._last_status = None

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What the status file says: the service is alive, and each job's last and next run."""
        now = self.clock()
        return {
            "service": {"pid": os.getpid(), "state": self.state, "started": stamp(self.started),
                        "heartbeat": stamp(now), "poll_seconds": self.poll,
                        "watching": [str(t) for t in self.targets]},
            "jobs": [{
                "name": e.name, "file": str(e.path),
                "schedule": e.timetable.text if e.timetable else None,
                "next_run": stamp(e.next_run), "running": e.running,
                "running_since": stamp(e.running_since) if e.running else None,
                "overlaps_skipped": e.overlaps,
                "file_error": e.error, "last_run": asdict(e.last) if e.last else None,
                "notified": self.notifier.told(e.path),
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
        write_status(self.status_file, self.status(), fatal=fatal)


def _resume(runs: JobRuns, batches: list[BatchInfo]) -> LastRun | None:
    return runs.resume(batches)
