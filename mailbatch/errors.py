"""The exception hierarchy: every error a user can cause, with the exit code cron sees.

Messages are written for the person running the job: location first (``path:line``,
``host:port``, the recipient), then what is wrong, then what to do.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "EXIT_ALREADY_RUNNING",
    "EXIT_CONFIG",
    "EXIT_DATA",
    "EXIT_FAILURES",
    "EXIT_INTERRUPTED",
    "EXIT_IO",
    "EXIT_NOPERM",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_SOFTWARE",
    "EXIT_TEMPFAIL",
    "EXIT_UNAVAILABLE",
    "EXIT_UNFINISHED",
    "EXIT_USAGE",
    "AlreadyRunningError",
    "ConnectError",
    "InterruptedRun",
    "JobError",
    "LoginError",
    "MailbatchError",
    "RenderError",
    "SessionLostError",
    "StateError",
    "TooManyFailuresError",
    "UnfinishedBatchError",
    "UsageError",
]

EXIT_OK = 0
EXIT_PARTIAL = 1  # the batch ran, but some recipients were refused, failed or are uncertain
EXIT_USAGE = 2  # the command line was wrong (argparse's own code)
EXIT_ALREADY_RUNNING = 3  # another run of this job holds its lock
EXIT_UNFINISHED = 4  # an older batch of this job still has recipients to send; nothing was sent
EXIT_FAILURES = 5  # smtp.max_failures: too many permanent failures or uncertain outcomes
EXIT_DATA = 65  # EX_DATAERR: a message could not be rendered; nothing was sent
EXIT_SOFTWARE = 70  # EX_SOFTWARE: a bug in mailbatch (the traceback is in a crash log)
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: could not connect or TLS failed; nothing more was sent
EXIT_IO = 74  # EX_IOERR: the report, outbox or journal could not be written
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: the server kept failing mid-batch; re-run to resume
EXIT_NOPERM = 77  # EX_NOPERM: the server refused the login
EXIT_CONFIG = 78  # EX_CONFIG: the job file is invalid; nothing was sent
EXIT_INTERRUPTED = 130  # stopped by SIGINT or SIGTERM; re-run to resume


class MailbatchError(Exception):
    """Raised for every failure a user can act on; ``str(err)`` is the line to print."""

    exit_code: int = EXIT_CONFIG


def _one_line(text: str) -> str:
    """A failure as one line, a line break from the data in it (a file name, a value)
    shown escaped, as ``\\n``: each failure is one line of the list."""
    if text.isprintable():
        return text
    return "".join(repr(c)[1:-1] if c in "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029" else c
                   for c in text)


class JobError(MailbatchError):
    """Raised when a job file, or a file it names, is invalid."""

    exit_code = EXIT_CONFIG

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.reason = message
        where = path or ""
        if path and line is not None:
            where += f":{line}"
        if field:
            where += f"{': ' if where else ''}{field}"
        super().__init__(f"{where}: {message}" if where else message)


class RenderError(MailbatchError):
    """Raised when messages cannot be rendered; carries every failure, not just the first."""

    exit_code = EXIT_DATA
    SHOWN = 50  # failures listed; the count says how many there were in all

    def __init__(self, failures: Sequence[str], total: int | None = None) -> None:
        self.failures = list(failures)
        self.total = total if total is not None else len(self.failures)
        head = f"{self.total} message(s) could not be rendered; nothing was sent"
        super().__init__("\n".join([head, *(f"  {_one_line(f)}" for f in self.failures)]))

    @classmethod
    def in_list_order(cls, failures: list[tuple[int, str]]) -> RenderError:
        """From (list position, text) pairs found in any order (chunks of the render pass
        finish out of order): the first ``SHOWN`` in recipient order, and the total."""
        failures.sort(key=lambda failure: failure[0])
        return cls([text for _, text in failures[:cls.SHOWN]], total=len(failures))


class ConnectError(MailbatchError, ConnectionError):
    """Raised when the SMTP server cannot be reached or its TLS certificate is not trusted."""

    exit_code = EXIT_UNAVAILABLE


class LoginError(MailbatchError):
    """Raised when the server refuses the login; retrying with the same password will not help."""

    exit_code = EXIT_NOPERM

    def __init__(self, message: str, *, code: int | None = None, reply: str = "") -> None:
        self.code = code
        self.reply = reply  # the server's text, without the code
        super().__init__(message)


class SessionLostError(MailbatchError, ConnectionError):
    """Raised when the server keeps failing after the batch began and retries are used up."""

    exit_code = EXIT_TEMPFAIL


class TooManyFailuresError(MailbatchError):
    """Raised when more messages were refused, failed or left uncertain than
    ``smtp.max_failures`` allows: the server or the job is likely broken for every message,
    so the batch stops with the rest pending instead of using them all up."""

    exit_code = EXIT_FAILURES


class AlreadyRunningError(MailbatchError):
    """Raised when another run of the same job holds its lock."""

    exit_code = EXIT_ALREADY_RUNNING


class UnfinishedBatchError(MailbatchError):
    """Raised when a run would start a new batch while an older one still has recipients to
    send: sending the new one would leave them without theirs (or, if the batch identity changed
    under a resume, send everyone a second copy). ``batch`` names the unfinished batch."""

    exit_code = EXIT_UNFINISHED

    def __init__(self, message: str, *, batch: str) -> None:
        self.batch = batch
        super().__init__(message)


class InterruptedRun(MailbatchError):
    """Raised when SIGINT or SIGTERM stopped the batch between two messages."""

    exit_code = EXIT_INTERRUPTED


class UsageError(MailbatchError):
    """Raised when a command-line argument names something that does not exist or cannot be."""

    exit_code = EXIT_USAGE


class StateError(MailbatchError, OSError):
    """Raised when the journal, report or outbox cannot be written."""

    exit_code = EXIT_IO
