"""What crosses from mailbatch to the terminal: text with control characters escaped, a crash
as one line plus a log file holding the traceback, a closed pipe as a quiet exit.

Only ``cli/`` prints; everything it prints that may hold recipient data (error lines, log
lines, warnings) goes through ``printable`` or the ``EscapingFormatter``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import platform
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailbatch._version import __version__

__all__ = ["EscapingFormatter", "GuardedStdout", "crash_log", "printable", "quiet_broken_pipe",
           "size_text", "standard_streams"]


def printable(text: str) -> str:
    """Text for a terminal: control characters (escape sequences that could rewrite the
    screen, a bell) and characters that cannot be encoded are shown escaped instead of being
    obeyed. Line breaks and tabs are kept: multi-line errors stay readable."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if (c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF) or c in "\n\t"
                   else repr(c)[1:-1] for c in text)


class EscapingFormatter(logging.Formatter):
    """A log formatter whose lines are made ``printable`` (log messages quote recipient data:
    an address, a server's reply), and that never shows a traceback: one logged with the
    record (a bug caught so that it does not end a run) goes to a crash log, and the line
    says where."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))

    def formatException(self, ei: Any) -> str:
        path = crash_log(ei[1], None) if ei and ei[1] is not None else None
        return f"  (the traceback is in {path})" if path else "  (no crash log written)"


def crash_log(error: BaseException, argv: Sequence[str] | None) -> Path | None:
    """Write the traceback of an unexpected error to a new file only the user can read, and
    return its path (None if no file could be written). It holds the traceback, the version
    and the command line: no local variables, so no secret."""
    text = "".join([
        f"mailbatch {__version__} crashed at {dt.datetime.now().astimezone().isoformat()}\n",
        f"python {platform.python_version()} on {platform.platform()}\n",
        f"command: mailbatch {' '.join(argv if argv is not None else sys.argv[1:])}\n\n",
        *traceback.format_exception(error),
    ])
    for folder in _crash_folders():
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, name = tempfile.mkstemp(prefix=f"crash-{dt.datetime.now():%Y%m%dT%H%M%S}-",
                                        suffix=".log", dir=folder)  # mode 0600
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as file:
                file.write(text)
            return Path(name)
        except OSError:
            continue
    return None


def _crash_folders() -> list[Path]:
    """$XDG_STATE_HOME/mailbatch (~/.local/state/mailbatch), else the temporary folder."""
    folders = []
    state = os.environ.get("XDG_STATE_HOME")
    if state and os.path.isabs(state):
        folders.append(Path(state) / "mailbatch")
    home = os.path.expanduser("~")
    if home != "~" and os.path.isabs(home):
        folders.append(Path(home) / ".local" / "state" / "mailbatch")
    folders.append(Path(tempfile.gettempdir()))
    return folders


def quiet_broken_pipe() -> None:
    """After a reader closed our stdout (``mailbatch preview | head``): point stdout at
    /dev/null, so the interpreter's final flush does not fail once more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (embedded, captured): nothing to do
        pass


def standard_streams() -> None:
    """Make stdout and stderr usable however we were started: closed ones (``>&-``, a
    daemon's ``2>&-``) become /dev/null, so nothing fails on them; text that the locale
    cannot encode (``PYTHONIOENCODING=ascii``) is written escaped, as stderr already is."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
        elif hasattr(stream, "reconfigure"):
            with contextlib.suppress(ValueError, OSError):
                stream.reconfigure(errors="backslashreplace")


class GuardedStdout:
    """stdout for one command: a write or flush that fails (``> /dev/full``, a full disk, a
    vanished terminal) is a StateError, one line with exit 74, and stdout is pointed at
    /dev/null so that the interpreter's final flush does not fail once more. A reader that
    went away (BrokenPipeError) stays what it is: the quiet exit 141."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except OSError as err:
            raise self._failed(err) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as err:
            raise self._failed(err) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    @staticmethod
    def _failed(err: OSError) -> OSError:
        if isinstance(err, BrokenPipeError):
            return err
        from mailbatch.errors import StateError

        quiet_broken_pipe()
        return StateError(f"standard output: cannot write: {err.strerror or err}; check where "
                          "the output goes (a full disk?)")


def size_text(count: int | None) -> str:
    """Bytes for people: 980 bytes, 12.3 KB, 4.0 MB."""
    count = count or 0
    if count < 1024:
        return f"{count} bytes"
    value = count / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
