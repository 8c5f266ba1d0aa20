"""The runner: the one place where the steps of a batch are wired together.

job → recipients → rendered messages (all of them, before anything is sent) → journal →
transport → report. The report is written whenever sending began, however the run ends.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from mailbatch.batch.delivery import Sender
from mailbatch.batch.journal import TO_SEND, BatchInfo, Journal
from mailbatch.batch.lock import job_lock
from mailbatch.batch.report import Report, write_report
from mailbatch.batch.spool import Spool
from mailbatch.errors import MailbatchError, RenderError, UnfinishedBatchError, UsageError
from mailbatch.job.addresses import Address
from mailbatch.job.model import Job
from mailbatch.job.recipients import Recipient, duplicate_failure, iter_recipients
from mailbatch.message.attachments import AttachmentCache, AttachmentProblem
from mailbatch.message.compose import compose
from mailbatch.message.render import Rendered, Renderer, RenderFailure
from mailbatch.message.renderpool import RenderPool, Result
from mailbatch.smtp.credentials import get_secret
from mailbatch.smtp.outbox import FileTransport
from mailbatch.smtp.transport import Envelope, Outcome, SmtpTransport, Transport

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
            spool: Spool | None = None, test_to: str | None = None) -> int:
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


def _attachment_list(rendered: Rendered) -> list[dict]:
    return [{"name": a.filename, "size": a.size, "type": a.content_type}
            for a in rendered.attachments]


def _envelope(rendered: Rendered) -> dict[str, list[str]]:
    """Every address the message is delivered to, by field, for the report row."""
    return {field: [mailbox.address for mailbox in getattr(rendered, field)]
            for field in ("to", "cc", "bcc")}


def run(job: Job, options: RunOptions | None = None) -> Report:
    """Run one batch of ``job`` (or resume it) and return its report."""
    options = options or RunOptions()
    now = options.now or dt.datetime.now().astimezone()
    test = options.test_to is not None
    # A test send gets Message-IDs of its own, so a mail store that drops duplicate IDs
    # cannot swallow the real message later.
    renderer = Renderer(job, now, message_id_salt=f"test {now.isoformat()}" if test else "")
    context = {**renderer.context, "batch": renderer.batch}
    with ExitStack() as stack:
        if options.dry_run or test:  # a test send leaves the job's journal alone
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="mailbatch-"))
            journal = stack.enter_context(Journal(Path(tmp) / "dry-run.sqlite"))
        else:
            assert job.state_dir is not None
            stack.enter_context(job_lock(job.state_dir / f"{job.name}.lock", job.name))
            journal = stack.enter_context(Journal(job.state_dir / f"{job.name}.sqlite"))
            journal.claim(job.path)
        if test:
            batch, resumed = journal.create(f"test-{now:%Y%m%dT%H%M%S}", now), False
        else:
            info, resumed = _batch_to_run(job, journal, renderer.batch, options, now)
            batch = info.batch
            if batch != renderer.batch or info.clock != now:
                # A resume renders with the batch's own clock, so its dates are the ones the
                # batch began with; a batch#2 gets Message-IDs of its own, or mail stores that
                # drop repeated IDs would drop its copies.
                renderer = Renderer(job, info.clock,
                                    message_id_salt=batch if batch != info.base else "")
                context = {**renderer.context, "batch": batch}
        context["batch"] = batch
        spool = stack.enter_context(Spool(journal.path.parent))
        total = prepare(job, renderer, journal, batch, options.test_limit if test else None,
                        options.resend_uncertain, spool, options.test_to)
        if options.resend_uncertain:
            journal.reset_uncertain(batch)
        journal.retire_unlisted(batch)
        to_send = sum(journal.counts(batch)[status] for status in TO_SEND)
        transport = options.transport or _transport(job, renderer, context, options)
        report = _new_report(job, renderer, batch, resumed, options, now, context)
        report.test_send = test
        sender = Sender(transport, journal, batch, retry=job.smtp.retry,
                        rate=None if options.dry_run else job.smtp.rate,
                        per_connection=job.smtp.max_messages_per_connection,
                        stop=options.stop)
        if to_send:  # a finished batch is re-reported without touching the server
            stack.enter_context(sender)  # connects and logs in: failures here send nothing
        try:
            if to_send:
                _send_all(job, renderer, journal, batch, sender, total, options, spool)
        except MailbatchError as err:
            report.error = str(err)
            err.report = report  # type: ignore[attr-defined]  # for the notify summary
            raise
        finally:
            report.finished = _stamp()
            report.counts = journal.counts(batch)
            write_report(report, lambda: journal.entries(batch))
            log.info("%s", report.summary())
    return report


def _send_all(job: Job, renderer: Renderer, journal: Journal, batch: str, sender: Sender,
              total: int, options: RunOptions, spool: Spool | None = None) -> None:
    sender_address = job.sender_address  # a property that parses ``from`` on every call
    upcoming = _Lookahead(_composed(job, renderer, journal, batch, options, spool),
                          sender_address)
    while (message := upcoming.take()) is not None:
        done, recipient, rendered, data = message
        del message
        name = f"{recipient.index + 1:06d}-{recipient.address}"
        # Compose the next message while the server answers this one, unless this one is
        # large: then it is freed before the next is composed (memory stays one message).
        outcome = sender.deliver(recipient.key, sender_address, rendered.envelope_recipients,
                                 data, name, upcoming.announce if len(data) <= LOOKAHEAD else None)
        del data
        if options.test_to and outcome.status in ("sent", "refused", "failed", "dry-run"):
            journal.mark(batch, recipient.key, outcome.status, outcome.code,
                         f"test send to {options.test_to}: {outcome.message}")
        if outcome.status not in ("sent", "dry-run"):
            log.warning("%s: %s %s %s", recipient.address, outcome.status, outcome.code or "",
                        outcome.message)
        if options.progress:
            options.progress(done, total, recipient.address, outcome)


LOOKAHEAD = 1024 * 1024  # after a message up to this size, the next is composed in advance
Composed = tuple[int, Recipient, Rendered, bytes]


def _composed(job: Job, renderer: Renderer, journal: Journal, batch: str, options: RunOptions,
              spool: Spool | None) -> Iterator[Composed]:
    """The messages still to send, in list order, composed; the ones that cannot be composed
    any more are recorded as failed on the way."""
    cache = AttachmentCache()
    for done, recipient in enumerate(iter_recipients(job), start=1):
        if options.test_to and options.test_limit and done > options.test_limit:
            return
        key = recipient.key
        if journal.status(batch, key) not in TO_SEND:
            continue
        try:
            rendered = spool.take(recipient) if spool is not None else None
            if rendered is None:
                rendered = renderer.render(recipient)
                if options.test_to:  # a spooled one already is
                    rendered = as_test_send(rendered, options.test_to)
            data = compose(rendered, cache)
        except (RenderFailure, AttachmentProblem) as err:  # a file changed since prepare()
            log.warning("%s: failed, not sent: %s", recipient.address, err)
            journal.mark(batch, key, "failed", None, str(err))
            continue
        except ValueError as err:  # a message the email standards cannot express: a bug
            log.error("%s: could not compose the message", recipient.address, exc_info=True)
            journal.mark(batch, key, "failed", None, f"could not compose the message: {err}")
            continue
        yield done, recipient, rendered, data
        del data


class _Lookahead:
    """One message ahead of the sender. ``fetch`` runs inside the transport while it waits
    for the server, so an error there is held and raised by the next ``take``, outside the
    transaction (where it would read as a failure of the message in flight)."""

    def __init__(self, messages: Iterator[Composed], sender: str = "") -> None:
        self._messages = messages
        self._sender = sender
        self._next: Composed | None = None
        self._fetched = False
        self._error: Exception | None = None

    def fetch(self) -> None:
        if self._fetched:
            return
        self._fetched = True
        try:
            self._next = next(self._messages, None)
        except Exception as err:
            self._error = err

    def announce(self) -> Envelope | None:
        """``fetch``, then the envelope of the message ``take`` will return next, if any."""
        self.fetch()
        if self._next is None:
            return None
        _, _, rendered, data = self._next
        return Envelope(self._sender, tuple(rendered.envelope_recipients), len(data))

    def take(self) -> Composed | None:
        self.fetch()
        message, self._next, self._fetched = self._next, None, False
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return message


def as_test_send(rendered: Rendered, address: str) -> Rendered:
    """The message as a test send: to ``address`` only (To header and envelope; no Cc, no Bcc),
    the subject marked ``[TEST]``; bodies and attachments exactly as the recipient gets them."""
    return dataclasses.replace(rendered, to=(Address("", address),), cc=(), bcc=(),
                               subject=f"[TEST] {rendered.subject}", widened=())


def _batch_to_run(job: Job, journal: Journal, base: str, options: RunOptions,
                  now: dt.datetime) -> tuple[BatchInfo, bool]:
    """The batch to run and whether it is resumed.

    The latest batch of this identity is resumed. A new one is refused while an older batch
    still has recipients to send (a ``{{ today }}`` batch interrupted before midnight and run
    again after it would otherwise leave them without theirs), unless ``--new-batch``.
    """
    if options.batch is not None:
        info = journal.find(options.batch)
        if info is None:
            known = ", ".join(b.batch for b in journal.unfinished()[:5]) or "none unfinished"
            raise UsageError(f"{job.path}: the job has no batch {options.batch!r} ({known}); "
                             "name a batch from its report or journal")
        return info, True
    latest = None if options.new_batch else journal.latest(base)
    if latest is not None:
        return latest, True
    older = journal.unfinished()
    if older and not (options.new_batch or options.leave_unfinished):
        first = older[0]
        raise UnfinishedBatchError(
            f"{job.path}: batch {first.batch} is unfinished ({first.to_send} recipient(s) still "
            f"to send), so batch {base} was not started and nothing was sent; finish it with "
            f"'mailbatch run --batch {first.batch} {job.path}', or start {base} anyway with "
            "--new-batch", batch=first.batch)
    if older and options.new_batch:  # the scheduler logs its own reason
        log.warning("%s: starting batch %s (--new-batch) while batch %s still has %d "
                    "recipient(s) to send; they are sent only by 'mailbatch run --batch %s'",
                    job.name, base, older[0].batch, older[0].to_send, older[0].batch)
    created = journal.find(journal.create(base, now))
    assert created is not None
    return created, False


def _transport(job: Job, renderer: Renderer, context: dict, options: RunOptions) -> Transport:
    if options.dry_run:
        return FileTransport(job.folder / renderer.string("outbox", job.outbox, context))
    return SmtpTransport(job.smtp, lambda: get_secret(job.smtp, job.path), debug=options.debug_smtp)


def _new_report(job: Job, renderer: Renderer, batch: str, resumed: bool, options: RunOptions,
                now: dt.datetime, context: dict) -> Report:
    prefix = job.folder / renderer.string("report", job.report, context)
    prefix = prefix.with_name(re.sub(r"[^\w.@+-]", "_", prefix.name))
    if options.dry_run:  # never overwrite the real delivery report of the same batch
        prefix = prefix.with_name(prefix.name + "-dry-run")
    return Report(
        job=job.name, job_file=str(job.path), batch=batch, resumed=resumed,
        dry_run=options.dry_run, started=now.isoformat(timespec="seconds"), finished="",
        server={"host": job.smtp.host, "port": job.smtp.port, "security": job.smtp.security,
                "username": job.smtp.username},
        counts={}, json_path=prefix.with_name(prefix.name + ".json"),
        csv_path=prefix.with_name(prefix.name + ".csv"),
    )


def _stamp() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")
