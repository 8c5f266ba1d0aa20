"""The status file: the service's state as JSON for monitors, and read back at start.

Written atomically (a reader never sees half a file). Read back when the service starts, so
each job's last run, and what its owner was last told, survive a restart: a monitor does not
lose a failure, and the owner is not told it again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mailbatch.batch.report import atomic_file
from mailbatch.errors import StateError

__all__ = ["LastRun", "Previous", "read_previous", "stamp", "write_status"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LastRun:
    """The outcome of one run, as the status file and ``--list`` show it."""

    started: str
    finished: str
    result: str  # ok, partial, incomplete, failed, interrupted, skipped, crashed
    exit_code: int
    summary: str
    report: str | None = None

    @classmethod
    def from_json(cls, value: Any) -> LastRun | None:
        """A LastRun read back from the status file, or None if it is not one."""
        if not isinstance(value, dict):
            return None
        try:
            run = cls(**{f.name: value[f.name] for f in fields(cls) if f.name in value})
        except TypeError:  # a field missing
            return None
        text = (run.started, run.finished, run.result, run.summary)
        if not all(isinstance(v, str) for v in text) or type(run.exit_code) is not int or \
                not isinstance(run.report, str | None):
            return None
        return run


@dataclass(frozen=True)
class Previous:
    """What a previous service wrote about one job file."""

    last_run: LastRun | None
    told: dict[str, str]  # the owner's last summary per batch, see notify.Notifier


def read_previous(path: Path | None) -> dict[Path, Previous]:
    """Each job file's last run and summary from the status file a previous service left;
    nothing if there is none, and a warning if it cannot be read."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("%s: cannot read the previous status (%s); the last runs before this "
                    "start are not shown", path, getattr(err, "strerror", None) or err)
        return {}
    jobs = data.get("jobs") if isinstance(data, dict) else None
    previous = {}
    for job in jobs if isinstance(jobs, list) else ():
        if isinstance(job, dict) and isinstance(job.get("file"), str):
            told = job.get("notified")
            told = {k: v for k, v in told.items() if isinstance(v, str)} \
                if isinstance(told, dict) else {}
            previous[Path(job["file"])] = Previous(LastRun.from_json(job.get("last_run")), told)
    return previous


def write_status(path: Path, status: dict[str, Any], *, fatal: bool = False) -> None:
    """Replace the status file; an error is logged, or raised as StateError if ``fatal``
    (at start: a status file that cannot be written is a configuration error)."""
    try:
        with atomic_file(path) as file:
            file.write(json.dumps(status, indent=2) + "\n")
    except OSError as err:  # StateError is one: the folder cannot be written
        if isinstance(err, StateError):  # it already names the path and what to do
            message = f"cannot write the status file: {err}"
        else:
            message = f"{path}: cannot write the status file: {err.strerror or err}; check " \
                "the folder is writable"
        if fatal:
            raise StateError(message) from None
        log.error("%s", message)


def stamp(moment: dt.datetime | None) -> str | None:
    """A moment as ISO 8601 in the machine's time zone, with its UTC offset."""
    return moment.astimezone().isoformat(timespec="seconds") if moment else None
