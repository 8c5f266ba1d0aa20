"""mailbatch: send batches of personalised report emails from a YAML job file, exactly once.

The public API is re-exported lazily, so ``mailbatch --help`` does not import Jinja or YAML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Job",
    "MailbatchError",
    "Report",
    "RunOptions",
    "__version__",
    "load_job",
    "run",
]

_EXPORTS = {
    "Job": "mailbatch.job",
    "load_job": "mailbatch.job",
    "MailbatchError": "mailbatch.errors",
    "Report": "mailbatch.report",
    "RunOptions": "mailbatch.runner",
    "run": "mailbatch.runner",
}

if TYPE_CHECKING:
    from mailbatch.errors import MailbatchError
    from mailbatch.job import Job, load_job
    from mailbatch.report import Report
    from mailbatch.runner import RunOptions, run


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mailbatch' has no attribute {name!r}")
