"""Log lines for systemd's journal: a syslog priority on every line, no timestamp of our own.

When systemd connects stderr to the journal it says so in ``JOURNAL_STREAM`` (the device and
inode of that stream). A line starting ``<3>`` is then stored with priority 3 (err), so
``journalctl -p err`` finds the failures; the journal stamps each line itself.
"""

from __future__ import annotations

import logging
import os
from typing import TextIO

__all__ = ["PriorityFormatter", "is_journal_stream", "use_journal_format"]

# logging level -> syslog priority (sd-daemon(3): <2> crit, <3> err, <4> warning, <6> info ...)
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
               (logging.INFO, 6))


def is_journal_stream(stream: TextIO) -> bool:
    """Whether ``stream`` is the one systemd connected to its journal (JOURNAL_STREAM)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        stat = os.fstat(stream.fileno())
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):
        return False


class PriorityFormatter(logging.Formatter):
    """Formats with ``inner``, then puts the record's syslog priority before every line (a
    traceback's lines too: the journal stores each line as its own entry)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in _PRIORITIES if record.levelno >= level), 7)
        prefix = f"<{priority}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


def use_journal_format(handler: logging.Handler, stream: TextIO) -> None:
    """If ``stream`` is systemd's journal: priorities, and no timestamp (the journal's own)."""
    if not is_journal_stream(stream):
        return
    kind = type(handler.formatter) if handler.formatter is not None else logging.Formatter
    handler.setFormatter(PriorityFormatter(kind("%(levelname)s %(message)s")))
