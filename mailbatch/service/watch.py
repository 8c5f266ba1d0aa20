"""The job files the scheduler watches: found in folders, re-read when they change.

A file that became invalid keeps its last valid version (``JobFile.job``) beside the error,
so the scheduler can report the problem and go on running what worked. Whatever reading a
file raises, even a bug of the loader, is that file's error: no job file can stop the
service or the other jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailbatch.errors import JobError, UsageError
from mailbatch.job.model import Job, load_job
from mailbatch.job.timetable import Timetable, parse_timetable
from mailbatch.job.yamlfile import load_yaml

__all__ = ["JOB_SUFFIXES", "Change", "JobFile", "JobFiles", "unexpected"]

log = logging.getLogger(__name__)

JOB_SUFFIXES = (".yaml", ".yml")
Signature = tuple[int, int, int]  # mtime_ns, size, inode: any edit or replacement changes it


@dataclass
class JobFile:
    """One watched job file: the last valid version of its job, and its current problem."""

    path: Path
    signature: Signature | None = None
    job: Job | None = None
    timetable: Timetable | None = None
    error: str | None = None  # why the file as it is now on disk is not in use

    @property
    def name(self) -> str:
        return self.job.name if self.job else self.path.stem


@dataclass(frozen=True)
class Change:
    """What one look found: ``added``, ``changed``, ``invalid`` or ``removed``."""

    kind: str
    file: JobFile
    reschedule: bool = False  # the timetable is new or different
    crash: BaseException | None = None  # ``invalid`` because of a bug: log its traceback


class JobFiles:
    """Folders (their ``*.yaml`` files with a ``schedule:`` key) and job files named directly."""

    def __init__(self, targets: Sequence[str | Path]) -> None:
        self.targets = [Path(t).absolute() for t in targets]
        self.folders = {t for t in self.targets if t.is_dir()}
        self.files: dict[Path, JobFile] = {}
        self._unlistable: set[Path] = set()

    def check_targets(self) -> None:
        for target in self.targets:
            if not target.exists():
                raise UsageError(f"{target}: no such file or folder; give a folder of job "
                                 "files, or job files")

    def scan(self) -> list[Change]:
        """Look at every file again; return what was added, changed, removed or broke."""
        found = self._paths()
        changes = [Change("removed", self.files.pop(path)) for path in list(self.files)
                   if path not in found]
        for path, explicit in found.items():
            try:
                stat = path.stat()
            except OSError:
                continue  # removed between the listing and now: the next look forgets it
            signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            known = self.files.get(path)
            if known is None or known.signature != signature:
                change = self._read(path, signature, explicit)
                if change is not None:
                    changes.append(change)
        return changes

    def _paths(self) -> dict[Path, bool]:
        """Job files to look at, each with whether it was named directly."""
        found: dict[Path, bool] = {}
        for target in self.targets:
            if target not in self.folders:
                if target.exists():
                    found[target] = True
                continue
            try:
                paths = sorted(target.iterdir())
                self._unlistable.discard(target)
            except OSError as err:  # keep what was loaded from it: it may come back
                if target not in self._unlistable:
                    log.error("%s: cannot list the folder: %s; its jobs stay as they were",
                              target, err.strerror or err)
                self._unlistable.add(target)
                paths = [p for p in self.files if p.parent == target]
            for path in paths:
                if path.suffix in JOB_SUFFIXES and not path.name.startswith(".") and \
                        path.is_file():
                    found.setdefault(path, False)
        return found

    def _read(self, path: Path, signature: Signature, explicit: bool) -> Change | None:
        known = self.files.get(path)
        try:
            if not explicit and not _declares_schedule(path):
                # Some other YAML file (recipients, data, an unscheduled job): not ours.
                return Change("removed", self.files.pop(path)) if known else None
            job = load_job(path)
            if job.schedule is None:
                raise JobError("has no schedule; add one such as 'schedule: every monday at "
                               "08:00' to run it with mailbatch schedule", path=str(path))
            timetable = parse_timetable(job.schedule)
        except JobError as err:
            return self._invalid(path, signature, str(err))
        except Exception as err:  # a bug in the loader: still only this file's problem
            return self._invalid(path, signature, unexpected(path, err), err)
        file = known or self.files.setdefault(path, JobFile(path))
        kind = "changed" if file.job else "added"
        reschedule = file.timetable is None or file.timetable.text != timetable.text
        file.signature, file.job, file.timetable, file.error = signature, job, timetable, None
        return Change(kind, file, reschedule)


    def _invalid(self, path: Path, signature: Signature, error: str,
                 crash: BaseException | None = None) -> Change:
        """The file as it is now cannot be used; its last valid version (if any) stays. The
        signature is kept, so the same error is reported once, not at every look."""
        file = self.files.setdefault(path, JobFile(path))
        file.signature, file.error = signature, error
        return Change("invalid", file, crash=crash)


def unexpected(path: Path, err: BaseException) -> str:
    """The error line of a job file whose loading raised what no job file should."""
    what = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return (f"{path}: cannot be loaded: {what}; this is a bug in mailbatch, please report it "
            "(the service logs its traceback)")


def _declares_schedule(path: Path) -> bool:
    """Whether a YAML file in a watched folder is a scheduled job (a file that cannot be read
    counts: its error is shown rather than the file ignored)."""
    try:
        data = load_yaml(path)
    except Exception:
        return True
    return isinstance(data, Mapping) and "schedule" in data
