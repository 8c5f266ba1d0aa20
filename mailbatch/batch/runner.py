"""The runner: the one place where the steps of a batch are wired together.

job → recipients → rendered messages (all of them, before anything is sent) → journal →
transport → report. The report is written whenever sending began, however the run ends.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
import re
import tempfile
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailbatch.batch.batches import batch_to_run, resume_hint
from mailbatch.batch.delivery import Sender
from mailbatch.batch.journal import TO_SEND, Journal
from mailbatch.batch.lock import JobLock, job_lock
from mailbatch.batch.report import Report, check_writable, exit_code_for, write_report
from mailbatch.batch.sending import SendPlan, send_all
from mailbatch.batch.spool import Spool
from mailbatch.errors import (
    EXIT_IO,
    InterruptedRun,
    MailbatchError,
    RenderError,
    StateError,
)
from mailbatch.job.addresses import Address
from mailbatch.job.model import Job
from mailbatch.job.recipients import duplicate_failure, iter_recipients
from mailbatch.message.render import Rendered, Renderer
from mailbatch.message.renderpool import RenderPool, Result
from mailbatch.smtp.credentials import get_secret
from mailbatch.smtp.outbox import FileTransport
from mailbatch.smtp.transport import Outcome, SmtpTransport, Transport

__all__ = ["RunOptions", "as_test_send", "prepare", "run"]

log = logging.getLogger(__name__)

SETTLED = frozenset({"sent", "refused", "failed", "uncertain"})  # nothing left to render
Progress = Callable[[int, int, str, Outcome], None]


@dataclass
class RunOptions:
    dry_run: bool = False
    new_batch: bool = False
    # Start (or resume) this period's batch even while an older one is unfinished: what the
    # scheduler does once it has tried to finish the older one. Unlike new_batch, it resumes
    # the current batch if there is one.
    leave_unfinished: bool = False
    batch: str | None = None  # continue this batch of the job, whatever ``batch:`` renders to now
    resend_uncertain: bool = False
    debug_smtp: bool = False
    now: dt.datetime | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    progress: Progress | None = None
    transport: Transport | None = None  # for tests and embedding; normally chosen here
    test_to: str | None = None  # a test send: messages go to this address only, see as_test_send
    test_limit: int | None = 1  # with test_to: how many of the first messages (None: all)


def prepare(job: Job, renderer: Renderer, journal: Journal, batch: str,
            limit: int | None = None, resend_uncertain: bool = False,
            spool: Spool | None = None, stop: threading.Event | None = None,
            test_to: str | None = None) -> int:
    """Render every message still to send and register every recipient (or the first
    ``limit``, for a test send); send nothing. Returns how many were registered.

    Recipients this batch already settled (sent, refused, failed, uncertain) are not rendered
    again: a resume must not be blocked by, say, an attachment deleted after it was sent.

    Raises RenderError listing every failure. Messages are rendered a chunk at a time (on two
    cores for a large batch, see renderpool.py) and kept only in ``spool`` (on disk), so this
    costs the same memory for ten recipients or a hundred thousand, and sending need not
    render them again.
    """
    failures: list[tuple[int, str]] = []  # (list position, text): chunks finish out of order
    count = 0

    def record(results: list[Result]) -> None:
        for recipient, message, keep in results:
            if isinstance(message, str):
                failures.append((recipient.index, message))
            elif keep:
                if test_to:  # the journal records the envelope the message goes out with
                    message = as_test_send(message, test_to)
                journal.register(batch, recipient.key, recipient.index, recipient.address,
                                 message.message_id, _attachment_list(message),
                                 _envelope(message))
                if spool is not None:
                    spool.add(message)

    journal.begin()
    try:
        journal.forget_seen()
        with RenderPool(renderer) as pool:
            for recipient in iter_recipients(job):
                if stop is not None and stop.is_set():  # SIGTERM: nothing is sent anyway
                    raise InterruptedRun("stopped while rendering; nothing was sent")
                count += 1
                # Before rendering: a duplicate is reported even when one copy fails to render.
                earlier = journal.first_seen(recipient.key, recipient.where)
                if earlier:
                    failures.append((recipient.index, duplicate_failure(recipient, earlier)))
                    continue
                status = journal.status(batch, recipient.key)
                if status in SETTLED and not (resend_uncertain and status == "uncertain"):
                    continue
                record(pool.add(recipient, keep=limit is None or count <= limit))
            record(pool.finish())
    except BaseException:
        journal.rollback()
        raise
    if failures:
        journal.rollback()
        raise RenderError.in_list_order(failures)
    journal.commit()
    return count if limit is None else min(count, limit)


def _attachment_list(rendered: Rendered) -> list[dict[str, Any]]:
    return [{"name": a.filename, "size": a.size, "type": a.content_type}
            for a in rendered.attachments]


def _envelope(rendered: Rendered) -> dict[str, list[str]]:
    """Every address the message is delivered to, by field, for the report row."""
    return {field: [mailbox.address for mailbox in getattr(rendered, field)]
            for field in ("to", "cc", "bcc")}


def run(job: Job, options: RunOptions | None = None) -> Report:
    """Run one batch of ``job`` (or resume it) and return its report."""
    options = options or RunOptions()
    if options.stop.is_set():  # a SIGTERM while the program was still starting
        raise InterruptedRun("stopped before the run began; nothing was sent")
    now = options.now or dt.datetime.now().astimezone()
    test = options.test_to is not None
    # A test send gets Message-IDs of its own, so a mail store that drops duplicate IDs
    # cannot swallow the real message later.
    renderer = Renderer(job, now, message_id_salt=f"test {now.isoformat()}" if test else "")
    context = {**renderer.context, "batch": renderer.batch}
    lock: JobLock | None = None
    with ExitStack() as stack:
        if options.dry_run or test:  # a test send leaves the job's journal alone
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="mailbatch-"))
            journal = stack.enter_context(Journal(Path(tmp) / "dry-run.sqlite"))
        else:
            assert job.state_dir is not None
            lock = stack.enter_context(job_lock(job.state_dir / f"{job.name}.lock", job.name))
            journal = stack.enter_context(Journal(job.state_dir / f"{job.name}.sqlite"))
            journal.claim(job.path)
        if test:
            name = _test_batch(job, renderer, options, context, now)
            batch, resumed = journal.create(name, now), False
        else:
            info, resumed = batch_to_run(
                job, journal, renderer.batch, options.batch, options.new_batch, now,
                options.leave_unfinished,
                None if options.dry_run else
                lambda name: _json_path(_report_prefix(job, renderer, options,
                                                       {**context, "batch": name})))
            batch = info.batch
            if batch != renderer.batch or info.clock != now:
                # A resume renders with the batch's own clock, so its dates are the ones the
                # batch began with; a batch#2 gets Message-IDs of its own, or mail stores that
                # drop repeated IDs would drop its copies.
                renderer = Renderer(job, info.clock,
                                    message_id_salt=batch if batch != info.base else "")
                context = {**renderer.context, "batch": batch}
        context["batch"] = batch
        resume = "run it again" if options.dry_run or test else \
            resume_hint(job, batch, options.batch is not None, options.new_batch)
        report = _new_report(job, renderer, batch, resumed, options, now, context)
        report.test_send = test
        spool = stack.enter_context(Spool(journal.path.parent))
        total = prepare(job, renderer, journal, batch, options.test_limit if test else None,
                        options.resend_uncertain, spool, options.stop, options.test_to)
        spool.finish()  # a full disk is found now, before anything is sent
        if options.resend_uncertain:
            journal.reset_uncertain(batch)
        journal.retire_unlisted(batch)
        to_send = sum(journal.counts(batch)[status] for status in TO_SEND)
        transport = options.transport or _transport(job, renderer, context, options)
        if isinstance(transport, FileTransport):
            report.outbox = str(transport.outbox)
        sender = Sender(transport, journal, batch, retry=job.smtp.retry,
                        rate=None if options.dry_run else job.smtp.rate,
                        per_connection=job.smtp.max_messages_per_connection,
                        max_failures=None if options.dry_run else job.smtp.max_failures,
                        stop=options.stop, resume=resume)
        if to_send:  # a finished batch is re-reported without touching the server
            check_writable(report)  # before sending, not after the whole batch went out
            if options.stop.is_set():  # SIGTERM while rendering: do not even log in
                raise InterruptedRun(f"stopped before sending; nothing was sent; {resume}")
            stack.enter_context(sender)  # connects and logs in: failures here send nothing
        failure: MailbatchError | None = None
        try:
            if to_send:
                adjust = (lambda rendered: as_test_send(rendered, options.test_to or "")) \
                    if test else None
                send_all(SendPlan(job, renderer, journal, batch, total, spool, adjust,
                                  options.test_limit if test else None, options.progress,
                                  lock, _test_marks(journal, batch, options)), sender)
        except MailbatchError as err:
            report.error = str(err)
            err.report = report  # type: ignore[attr-defined]  # for the notify summary
            failure = err
            raise
        except BaseException as err:  # a second Ctrl-C, or a bug: the report says so too
            interrupted = isinstance(err, KeyboardInterrupt)
            report.error = ("interrupted at once (a second signal); the message in flight may "
                            "be uncertain") if interrupted else \
                f"internal error ({type(err).__name__})"
            err.report = report  # type: ignore[attr-defined]  # for run --json
            raise
        finally:
            _finish_report(report, journal, batch, failure)
    return report


def _finish_report(report: Report, journal: Journal, batch: str,
                   failure: MailbatchError | None) -> None:
    """Write the report, however sending ended. If it cannot be written, the run's own
    outcome is not lost: a failure that ended the run stays the error (with the report's
    attached as ``report_error``); otherwise a StateError says so, with the run's exit code
    when that says more than 74 (1: some not delivered, 75: some still to send)."""
    report.finished = _stamp()
    try:
        report.counts = journal.counts(batch)
        write_report(report, lambda: journal.entries(batch))
    except StateError as err:
        report.json_path = report.csv_path = None  # not written: no path to point at
        _record_run(journal, batch, report)
        if failure is not None:
            failure.report_error = str(err)  # type: ignore[attr-defined]
            return
        err.report = report  # type: ignore[attr-defined]
        err.exit_code = exit_code_for(report) or EXIT_IO
        raise
    _record_run(journal, batch, report)
    log.debug("%s", report.summary())  # the caller prints it: said once


def _record_run(journal: Journal, batch: str, report: Report) -> None:
    """When the run ended and where its report is, for ``mailbatch history``: worth a
    warning if it cannot be noted, never the run's outcome."""
    try:
        journal.record_run(batch, report.finished, report.json_path, report.csv_path)
    except StateError as err:
        log.warning("%s; 'mailbatch history' will not show this run's end or report", err)


def _test_marks(journal: Journal, batch: str,
                options: RunOptions) -> Callable[[str, Outcome], None] | None:
    """For a test send, each row's message says where the message really went."""
    if not options.test_to:
        return None

    def mark(key: str, outcome: Outcome) -> None:
        if outcome.status in ("sent", "refused", "failed", "dry-run"):
            journal.mark(batch, key, outcome.status, outcome.code,
                         f"test send to {options.test_to}: {outcome.message}")

    return mark


def as_test_send(rendered: Rendered, address: str) -> Rendered:
    """The message as a test send: to ``address`` only (To header and envelope; no Cc, no Bcc),
    the subject marked ``[TEST]``; bodies and attachments exactly as the recipient gets them."""
    return dataclasses.replace(rendered, to=(Address("", address),), cc=(), bcc=(),
                               subject=f"[TEST] {rendered.subject}", widened=())


def _transport(job: Job, renderer: Renderer, context: dict[str, Any],
               options: RunOptions) -> Transport:
    if options.dry_run:
        return FileTransport(job.folder / renderer.string("outbox", job.outbox, context))
    return SmtpTransport(job.smtp, lambda: get_secret(job.smtp, job.path), debug=options.debug_smtp)


def _report_prefix(job: Job, renderer: Renderer, options: RunOptions,
                   context: dict[str, Any]) -> Path:
    """Where a batch's report goes, without ``.json`` or ``.csv``."""
    prefix = job.folder / renderer.string("report", job.report, context)
    prefix = prefix.with_name(re.sub(r"[^\w.@+-]", "_", prefix.name))
    if options.dry_run:  # never overwrite the real delivery report of the same batch
        prefix = prefix.with_name(prefix.name + "-dry-run")
    return prefix


def _json_path(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".json")  # not with_suffix: "2026.11" keeps its ".11"


def _new_report(job: Job, renderer: Renderer, batch: str, resumed: bool, options: RunOptions,
                now: dt.datetime, context: dict[str, Any]) -> Report:
    prefix = _report_prefix(job, renderer, options, context)
    return Report(
        job=job.name, job_file=str(job.path), batch=batch, resumed=resumed,
        dry_run=options.dry_run, started=now.isoformat(timespec="seconds"), finished="",
        server={"host": job.smtp.host, "port": job.smtp.port, "security": job.smtp.security,
                "username": job.smtp.username},
        counts={}, json_path=_json_path(prefix),
        csv_path=prefix.with_name(prefix.name + ".csv"),
    )


def _test_batch(job: Job, renderer: Renderer, options: RunOptions, context: dict[str, Any],
                now: dt.datetime) -> str:
    """A test send's batch name, ``test-20261130T081500``, or ``...#2`` when a test send of
    the same second already wrote that report: each keeps its own."""
    base = f"test-{now:%Y%m%dT%H%M%S}"
    for n in itertools.count(1):
        name = base if n == 1 else f"{base}#{n}"
        prefix = _report_prefix(job, renderer, options, {**context, "batch": name})
        if not _json_path(prefix).exists():
            return name
    raise AssertionError("unreachable")


def _stamp() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")
