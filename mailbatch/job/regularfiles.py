"""Only regular files are read as a job, a recipient list or a data file: opening a FIFO blocks
until something writes to it (a cron run would hang for ever) and a device may never end."""

from __future__ import annotations

import stat
from pathlib import Path

from mailbatch.errors import JobError

__all__ = ["refuse_special"]


def refuse_special(path: Path) -> None:
    """A JobError if ``path`` is a folder, a pipe, a socket or a device. A path that does not
    exist or cannot be looked at passes: the read that follows says so in its own words."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return
    if stat.S_ISDIR(mode):
        raise JobError("is a folder, not a file; give the path of a file", path=str(path))
    if not stat.S_ISREG(mode):
        raise JobError("is not a regular file (a pipe, a socket or a device); give the path "
                       "of a file", path=str(path))
