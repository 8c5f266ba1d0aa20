"""mailbatch: send batches of personalised report emails from a YAML job file, exactly once.

The Python API, for running a job without the command line::

    import mailbatch

    job = mailbatch.load_job("weekly-sales.yaml")    # raises JobError naming file and line
    report = mailbatch.run(job, mailbatch.RunOptions(dry_run=True))
    print(report.summary(), report.counts)

Every failure a user can act on is a ``MailbatchError`` (its subclasses below) whose text is
the line to show and whose ``exit_code`` is what the command line would exit with. The names
are imported lazily, so ``mailbatch --help`` does not import Jinja or YAML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailbatch._version import __version__

_ERRORS = ("AlreadyRunningError", "ConnectError", "InterruptedRun", "JobError", "LoginError",
           "MailbatchError", "RenderError", "SessionLostError", "StateError",
           "TooManyFailuresError", "UnfinishedBatchError", "UsageError")
_EXPORTS = {
    "Job": "mailbatch.job.model",
    "load_job": "mailbatch.job.model",
    "Report": "mailbatch.batch.report",
    "RunOptions": "mailbatch.batch.runner",
    "run": "mailbatch.batch.runner",
    **dict.fromkeys(_ERRORS, "mailbatch.errors"),
}

__all__ = [
    "AlreadyRunningError",
    "ConnectError",
    "InterruptedRun",
    "Job",
    "JobError",
    "LoginError",
    "MailbatchError",
    "RenderError",
    "Report",
    "RunOptions",
    "SessionLostError",
    "StateError",
    "TooManyFailuresError",
    "UnfinishedBatchError",
    "UsageError",
    "__version__",
    "load_job",
    "run",
]

if TYPE_CHECKING:
    from mailbatch.batch.report import Report
    from mailbatch.batch.runner import RunOptions, run
    from mailbatch.errors import (
        AlreadyRunningError,
        ConnectError,
        InterruptedRun,
        JobError,
        LoginError,
        MailbatchError,
        RenderError,
        SessionLostError,
        StateError,
        TooManyFailuresError,
        UnfinishedBatchError,
        UsageError,
    )
    from mailbatch.job.model import Job, load_job


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mailbatch' has no attribute {name!r}")
