"""The notify summary: after a run with problems (or every run, if asked) the job's owner is told.

Used by ``mailbatch run`` and by the scheduler alike. The summary goes through the job's own
SMTP server in a session of its own; if it cannot be sent that is logged, and the run's
result and exit code stay what they were. The scheduler sends it through a ``Notifier``,
once per change of a batch's outcome: a job failing the same way at every tick, or re-run
with nothing left to send, mails its owner once.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import secrets
import threading
from email.utils import format_datetime
from pathlib import Path

from mailbatch.batch.report import Report, exit_code_for
from mailbatch.errors import (
    EXIT_SOFTWARE,
    AlreadyRunningError,
    ConnectError,
    LoginError,
    MailbatchError,
)
from mailbatch.job.model import Job
from mailbatch.job.recipients import Recipient
from mailbatch.message.compose import compose
from mailbatch.message.parts import AttachmentCache
from mailbatch.message.render import Rendered
from mailbatch.smtp.credentials import get_secret
from mailbatch.smtp.transport import SmtpTransport

__all__ = ["PROBLEMS", "Notifier", "build_summary", "needs_summary", "outcome_of",
           "send_summary"]

log = logging.getLogger(__name__)

PROBLEMS = ("refused", "failed", "uncertain", "deferred", "pending")
MAX_LISTED = 50
_NEXT = {
    "deferred": "deferred and pending recipients are sent by the next run of the same batch",
    "pending": "deferred and pending recipients are sent by the next run of the same batch",
    "uncertain": "uncertain recipients may have the message; they are resent only with "
                 "mailbatch run --resend-uncertain",
}


def needs_summary(job: Job, report: Report | None, error: BaseException | None) -> bool:
    """Whether this run calls for a summary: it had problems, or the job asks for every run."""
    if job.notify is None or (report is None and error is None):
        return False
    if isinstance(error, AlreadyRunningError):
        return False  # not a run: another one holds the lock, and it will report
    if report is not None and (report.dry_run or report.test_send):
        return False
    if job.notify.when == "always" or error is not None:
        return True
    return report is not None and any(report.counts.get(status) for status in PROBLEMS)


def send_summary(job: Job, report: Report | None = None,
                 error: BaseException | None = None) -> bool:
    """Send the summary if ``needs_summary``; never raises. Returns whether it was sent."""
    if not needs_summary(job, report, error):
        return False
    assert job.notify is not None
    to = job.notify.to
    reason = _cannot_send(job, report, error)
    if reason:
        log.warning("%s: notify summary to %s not sent: %s", job.name, to, reason)
        return False
    try:
        data = build_summary(job, report, error)
        with SmtpTransport(job.smtp, lambda: get_secret(job.smtp, job.path)) as transport:
            outcome = transport.send(job.sender_address, [job.notify.mailbox.address], data,
                                     "notify summary", lambda: None)
    except MailbatchError as err:
        log.warning("%s: notify summary to %s not sent: %s", job.name, to, err)
        return False
    except Exception:  # a bug here must not change the run's result
        log.exception("%s: notify summary to %s not sent", job.name, to)
        return False
    if outcome.status != "sent":
        log.warning("%s: notify summary to %s not sent: %s %s", job.name, to,
                    outcome.code or "", outcome.message)
        return False
    log.info("%s: notify summary sent to %s", job.name, to)
    return True


def _cannot_send(job: Job, report: Report | None, error: BaseException | None) -> str | None:
    """Why a summary is not even attempted, or None."""
    if report is None and isinstance(error, ConnectError | LoginError):
        return "the server failed for the run itself"
    if job.smtp.username and (job.smtp.password is None or job.smtp.password.kind == "prompt"):
        return ("the password was typed at a prompt and is not kept; use password_env, "
                "password_file or password_command")
    return None


def outcome_of(report: Report | None, error: BaseException | None) -> str:
    """A run's outcome in one line, as the owner's summary would tell it: the exit code, the
    counts and the error. Two runs with the same outcome need not be told twice."""
    if isinstance(error, MailbatchError):
        code = error.exit_code
    elif error is not None:
        code = EXIT_SOFTWARE  # a bug, see the scheduler's log
    else:
        code = exit_code_for(report) if report is not None else 0
    parts = [f"exit {code}"]
    if report is not None:
        parts.append(", ".join(f"{n} {s}" for s, n in report.counts.items() if n)
                     or "no recipients")
    if error is not None:
        parts.append((str(error).splitlines() or [type(error).__name__])[0])
    return ": ".join(parts)


class Notifier:
    """The scheduler's summaries: sent once per change of a batch's outcome, not per run.

    For each job it remembers, per batch, the outcome the owner was last told about (or that
    needed no telling); a run whose batch ends the same way again sends nothing. A run that
    stopped before it had a batch (a template that does not render, a crash) counts under
    the job itself, until a run with a batch comes. A summary that could not be sent is not
    remembered, so the next run tries again. ``told`` is kept in the status file, so a
    restart does not tell the owner again either.
    """

    KEEP = 20  # batches remembered per job

    def __init__(self) -> None:
        self._told: dict[Path, dict[str, str]] = {}
        self._lock = threading.Lock()

    def told(self, path: Path) -> dict[str, str]:
        """What the owner of the job file at ``path`` was last told, per batch ("" for the
        job itself)."""
        with self._lock:
            return dict(self._told.get(path, {}))

    def restore(self, path: Path, told: dict[str, str]) -> None:
        with self._lock:
            self._told[path] = {str(k): str(v) for k, v in told.items()}

    def after_run(self, job: Job, report: Report | None, error: BaseException | None,
                  ) -> bool:
        """Tell the owner about this run if its outcome is new; returns whether a summary
        was sent. Never raises."""
        if isinstance(error, AlreadyRunningError):
            return False  # not a run of ours
        if job.notify is None:  # nobody to tell: the status file must not say anyone was
            with self._lock:
                self._told.pop(job.path, None)
            return False
        slot, outcome = (report.batch if report else ""), outcome_of(report, error)
        with self._lock:
            told = self._told.setdefault(job.path, {})
            if report is not None:
                told.pop("", None)  # a run got as far as a batch: the job's own trouble ended
            if told.get(slot) == outcome:
                log.debug("%s: outcome unchanged (%s); the owner is not told again",
                          job.name, outcome)
                return False
        sent = send_summary(job, report, error)
        if sent or not needs_summary(job, report, error) or _cannot_send(job, report, error):
            with self._lock:
                told = self._told.setdefault(job.path, {})
                told.pop(slot, None)  # the newest last
                told[slot] = outcome
                for old in list(told)[:-self.KEEP]:
                    del told[old]
        return sent


def build_summary(job: Job, report: Report | None, error: BaseException | None,
                  now: dt.datetime | None = None) -> bytes:
    """The summary message: result, counts, recipients not delivered with reasons, report;
    composed like every message mailbatch sends (headers.py writes the addresses)."""
    assert job.notify is not None
    headline = _headline(report, error)
    owner = job.notify.mailbox
    summary = Rendered(
        recipient=Recipient(index=0, address=owner.address, name=owner.name, fields={},
                            where="notify"),
        sender=job.mailbox, to=(owner,), cc=(), bcc=(), reply_to=(),
        subject=f"[mailbatch] {job.name}" + (f" {report.batch}" if report else "")
        + f": {headline}",
        headers=(("Auto-Submitted", "auto-generated"),),  # RFC 3834: no vacation replies
        text="\n".join(_body(job, report, error, headline)) + "\n", html=None, attachments=(),
        message_id=f"<{secrets.token_hex(12)}.mailbatch-notify@{job.sender_domain}>")
    return compose(summary, AttachmentCache(),
                   date=format_datetime(now or dt.datetime.now().astimezone()))


def _body(job: Job, report: Report | None, error: BaseException | None,
          headline: str) -> list[str]:
    lines = [f"Job:       {job.name} ({job.path})", f"Result:    {headline}"]
    if report is not None:
        resumed = " (resumed)" if report.resumed else ""
        server = report.server
        lines += [f"Batch:     {report.batch}{resumed}", f"Started:   {report.started}",
                  f"Finished:  {report.finished}",
                  f"Server:    {server.get('host')}:{server.get('port')}"
                  + (f" as {server['username']}" if server.get("username") else ""),
                  "Counts:    " + (", ".join(f"{n} {s}" for s, n in report.counts.items() if n)
                                   or "no recipients")]
    if error is not None:
        first, *more = str(error).splitlines() or [type(error).__name__]
        lines.append(f"Error:     {first}")
        lines += [f"           {line.strip()}" for line in more]
    if report is None:
        lines.append("Nothing was sent.")
    else:
        lines += _not_delivered(report)
        if report.json_path or report.csv_path:
            paths = [str(p) for p in (report.json_path, report.csv_path) if p]
            lines += ["", f"Report:    {paths[0]}", *(f"           {p}" for p in paths[1:])]
        hints = dict.fromkeys(_NEXT[s] for s in _NEXT if report.counts.get(s))
        lines += [f"Next:      {hint}" for hint in hints]
    return lines


def _headline(report: Report | None, error: BaseException | None) -> str:
    if report is None:
        return "failed, nothing sent"
    total = report.total
    problems = sum(report.counts.get(s, 0) for s in PROBLEMS)
    if error is not None:
        return f"stopped with {report.counts.get('sent', 0)} of {total} sent"
    if problems:
        return f"{problems} of {total} not delivered"
    return f"all {total} sent" if total else "no recipients"


def _not_delivered(report: Report) -> list[str]:
    """The recipients not delivered, read back from the CSV report (streamed, not loaded)."""
    if not any(report.counts.get(s) for s in PROBLEMS):
        return []
    lines = ["", "Not delivered:"]
    if report.csv_path is None:
        return [*lines, "  (no CSV report to list them from)"]
    shown = more = 0
    try:
        with open(report.csv_path, encoding="utf-8", newline="") as file:
            for row in csv.DictReader(file):
                if row.get("status") not in PROBLEMS:
                    continue
                if shown == MAX_LISTED:
                    more += 1
                    continue
                shown += 1
                reason = " ".join(filter(None, (row.get("code"), row.get("message"))))
                lines.append(f"  {row.get('address')}: {row.get('status')}"
                             + (f": {reason}" if reason else ""))
    except OSError as err:
        lines.append(f"  (cannot read the report: {err.strerror or err}; see the report files)")
    if more:
        lines.append(f"  ... and {more} more: see the report")
    return lines
