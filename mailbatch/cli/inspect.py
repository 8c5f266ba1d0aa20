"""Looking before sending: ``check`` validates a whole batch, ``preview`` shows one message.

Both render exactly what a run would send, with the same Renderer and compose(); neither
writes a journal, a report or an outbox, and only ``check(connect=True)`` touches the network.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mailbatch.batch.journal import Journal
from mailbatch.cli.boundary import printable
from mailbatch.errors import RenderError, UsageError
from mailbatch.job.model import Job
from mailbatch.job.recipients import Recipient, duplicate_failure, iter_recipients
from mailbatch.message.attachments import Attachment, AttachmentCache, AttachmentProblem
from mailbatch.message.compose import compose
from mailbatch.message.proof import prove
from mailbatch.message.render import Renderer, RenderFailure
from mailbatch.message.renderpool import RenderPool, Result
from mailbatch.smtp.credentials import describe, get_secret
from mailbatch.smtp.transport import SmtpTransport

__all__ = ["CheckSummary", "Preview", "check", "preview", "printable", "size_text"]

log = logging.getLogger(__name__)

_HIDDEN_HEADERS = {"mime-version", "content-type", "content-transfer-encoding"}


@dataclass
class CheckSummary:
    """What ``mailbatch check`` found: enough to judge the batch before it reaches anyone."""

    job: str
    batch: str
    server: str
    password: str
    recipients: int = 0
    attachments_min: int = 0
    attachments_max: int = 0
    attachments_total: int = 0  # attachment parts across all messages
    attachment_files: int = 0  # distinct files
    attachment_bytes: int = 0  # distinct files, as stored on disk
    total_bytes: int = 0  # every message as it goes over the wire
    largest_bytes: int = 0
    largest_to: str = ""
    warnings: list[str] = field(default_factory=list)
    connected: bool = False
    server_max_size: int | None = None

    def lines(self, path: Path) -> list[str]:
        """The summary as ``mailbatch check`` prints it."""
        per = (f"{self.attachments_min}" if self.attachments_min == self.attachments_max
               else f"{self.attachments_min} to {self.attachments_max}")
        lines = [
            f"{path}: OK, nothing sent: {self.recipients} recipient(s), batch {self.batch}",
            f"  attachments: {per} per recipient ({self.attachments_total} in all), "
            f"{self.attachment_files} distinct file(s), {size_text(self.attachment_bytes)}",
            f"  total size:  {size_text(self.total_bytes)} in {self.recipients} message(s); "
            f"largest {size_text(self.largest_bytes)} (to {self.largest_to})",
            f"  server:      {self.server}; {self.password}",
        ]
        if self.connected:
            limit = (f"messages up to {size_text(self.server_max_size)}"
                     if self.server_max_size else "no SIZE limit announced")
            lines.append(f"  login:       OK, logged in and quit ({limit})")
        return lines


def check(job: Job, *, now: dt.datetime | None = None, connect: bool = False,
          debug_smtp: bool = False) -> CheckSummary:
    """Render and compose every message, read every attachment; with ``connect``, log in and
    quit. Raises RenderError listing every problem (nothing is sent either way)."""
    renderer = Renderer(job, now)
    context = {**renderer.context, "batch": renderer.batch}
    renderer.string("report", job.report, context)  # a bad path template fails here, not later
    renderer.string("outbox", job.outbox, context)
    s = job.smtp
    source, problem = describe(s)
    summary = CheckSummary(job=job.name, batch=renderer.batch, password=source,
                           server=f"{s.where} ({s.security}"
                                  f"{', certificate NOT verified' if not s.verify else ''})")
    if problem:
        summary.warnings.append(f"password: {problem}")
    failures: list[tuple[int, str]] = []  # (list position, text), as the run lists them
    files: dict[Path, int] = {}
    cache = AttachmentCache()

    def measure(results: list[Result]) -> None:
        for recipient, rendered, _ in results:
            if isinstance(rendered, str):
                failures.append((recipient.index, rendered))
                continue
            try:
                size = len(compose(rendered, cache))
            except (AttachmentProblem, ValueError) as err:  # a file gone since it was found
                failures.append((recipient.index,
                                 f"{recipient.where} ({recipient.address}): {err}"))
                continue
            _count(summary, recipient, rendered.attachments, size, files)

    # Duplicates are found as the run finds them, in a journal's listing (on disk, so the
    # memory of a check does not grow with the list); this one is thrown away.
    with tempfile.TemporaryDirectory(prefix="mailbatch-") as tmp, \
            Journal(Path(tmp) / "check.sqlite") as journal, RenderPool(renderer) as pool:
        journal.begin()
        for recipient in iter_recipients(job):
            summary.recipients += 1
            earlier = journal.first_seen(recipient.key, recipient.where)
            if earlier:
                failures.append((recipient.index, duplicate_failure(recipient, earlier)))
                continue
            measure(pool.add(recipient))
        measure(pool.finish())
        journal.rollback()
    if failures:
        raise RenderError.in_list_order(failures)
    summary.attachment_files = len(files)
    summary.attachment_bytes = sum(files.values())
    if connect:
        transport = SmtpTransport(s, lambda: get_secret(s, job.path), debug=debug_smtp)
        with transport:  # connects, starts TLS, logs in; quits on the way out
            summary.connected = True
            summary.server_max_size = transport.max_size
        if transport.max_size and summary.largest_bytes > transport.max_size:
            summary.warnings.append(
                f"the largest message ({summary.largest_bytes} bytes, to "
                f"{summary.largest_to}) is over the server's SIZE limit of "
                f"{transport.max_size} bytes; it would fail")
    return summary


def _count(summary: CheckSummary, recipient: Recipient, attachments: tuple[Attachment, ...],
           size: int, files: dict[Path, int]) -> None:
    n = len(attachments)
    first = summary.total_bytes == 0  # every message has a size, so none counted yet
    summary.attachments_min = n if first else min(summary.attachments_min, n)
    summary.attachments_max = max(summary.attachments_max, n)
    summary.attachments_total += n
    summary.total_bytes += size
    if size > summary.largest_bytes:
        summary.largest_bytes, summary.largest_to = size, recipient.address
    for attachment in attachments:
        files[attachment.path.resolve()] = attachment.size
    names = ", ".join(a.filename for a in attachments) or "no attachments"
    log.info("%s: %d bytes; %s", recipient.address, size, names)


@dataclass(frozen=True)
class Preview:
    """One message as its recipient will get it, plus what only the envelope shows."""

    number: int  # 1-based position in the recipient list
    total: int
    where: str
    headers: tuple[tuple[str, str], ...]  # as decoded from the composed message
    envelope: tuple[str, ...]  # every address the server delivers to (To, Cc and Bcc)
    bcc: tuple[str, ...]
    text: str | None
    html: str | None
    attachments: tuple[Attachment, ...]
    size: int
    data: bytes = b""  # the composed message, exactly as it would be sent

    def lines(self, html_out: str | None = None) -> list[str]:
        """The message as ``mailbatch preview`` prints it; recipient data made printable."""
        out = [f"# message {self.number} of {self.total} ({self.where}), {size_text(self.size)}"]
        out += [f"{name}: {printable(value)}" for name, value in self.headers]
        if self.bcc:
            out.append(f"(Bcc, envelope only: {printable(', '.join(self.bcc))})")
        out += [f"(delivered to: {printable(', '.join(self.envelope))})", ""]
        if self.text is not None:
            out.append(printable(self.text).rstrip("\n"))
        else:
            out.append("(no text body: this message has only an HTML body; see --html-out)")
        out.append("")
        if self.attachments:
            out.append(f"# {len(self.attachments)} attachment(s):")
            out += [f"  {printable(a.filename)}  {a.content_type}  {size_text(a.size)}  "
                    f"({printable(str(a.path))})" for a in self.attachments]
        else:
            out.append("# no attachments")
        if self.html is not None:
            out.append(f"# HTML body written to {html_out}" if html_out else
                       "# the message also has an HTML body: write it with --html-out FILE")
        return out


def preview(job: Job, which: str | None = None, *, now: dt.datetime | None = None) -> Preview:
    """Render the message of one recipient, chosen by address or by 1-based position
    (default: the first). Raises UsageError when no recipient matches."""
    renderer = Renderer(job, now)
    wanted = (which or "1").strip()
    chosen: Recipient | None = None
    total = 0
    for recipient in iter_recipients(job):
        total += 1
        if chosen is None and _matches(recipient, wanted):
            chosen = recipient
    if chosen is None:
        if wanted.isdigit():
            raise UsageError(f"{job.path}: there is no recipient number {wanted}; the list has "
                             f"{total} (give a number from 1 to {total}, or an address)")
        raise UsageError(f"{job.path}: {wanted!r} is not in the recipient list; give one of "
                         f"its addresses or a number from 1 to {total}")
    try:
        rendered = renderer.render(chosen)
        prove(rendered)
        data = compose(rendered, AttachmentCache())
    except RenderFailure as err:
        raise RenderError([str(err)]) from None
    except AttachmentProblem as err:
        raise RenderError([f"{chosen.where} ({chosen.address}): {err}"]) from None
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    headers = tuple((name, str(value)) for name, value in parsed.items()
                    if name.lower() not in _HIDDEN_HEADERS)
    return Preview(number=chosen.index + 1, total=total, where=chosen.where, headers=headers,
                   envelope=tuple(rendered.envelope_recipients), bcc=rendered.bcc,
                   text=rendered.text, html=rendered.html, attachments=rendered.attachments,
                   size=len(data), data=data)


def _matches(recipient: Recipient, wanted: str) -> bool:
    if wanted.isdigit():
        return recipient.index + 1 == int(wanted)
    return recipient.key == wanted.lower()


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
