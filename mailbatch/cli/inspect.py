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
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from mailbatch.batch.journal import Journal
from mailbatch.cli.boundary import printable
from mailbatch.errors import RenderError, UsageError
from mailbatch.job.model import Job
from mailbatch.job.recipients import Recipient, duplicate_failure, iter_recipients
from mailbatch.message.attachments import Attachment, AttachmentCache, AttachmentProblem
from mailbatch.message.compose import compose
from mailbatch.message.inline import InlineImage, rewrite_references
from mailbatch.message.proof import prove
from mailbatch.message.render import Renderer, RenderFailure
from mailbatch.message.renderpool import RenderPool, Result
from mailbatch.smtp.credentials import describe, get_secret
from mailbatch.smtp.transport import SmtpTransport

__all__ = ["CheckSummary", "Preview", "check", "preview", "printable", "size_text", "write_html"]

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
    html_min: int = 0  # the HTML part of each message, as sent (CSS inlined)
    html_max: int = 0
    images_min: int = 0  # inline images per message
    images_max: int = 0
    images_total: int = 0
    image_files: int = 0  # distinct images (a chart drawn once counts once)
    image_bytes: int = 0
    warnings: list[str] = field(default_factory=list)
    connected: bool = False
    server_max_size: int | None = None

    def _content_lines(self) -> list[str]:
        if not self.html_max:
            return []
        html = size_text(self.html_min)
        if size_text(self.html_max) != html:
            html += f" to {size_text(self.html_max)}"
        images = (f"{self.images_min}" if self.images_min == self.images_max
                  else f"{self.images_min} to {self.images_max}")
        return [f"  html:        {html} per message, as sent",
                f"  images:      {images} inline per message ({self.images_total} in all), "
                f"{self.image_files} distinct file(s), {size_text(self.image_bytes)}"]

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
            *self._content_lines(),
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
    images: dict[Path, int] = {}
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
            _count_html(summary, recipient, rendered.html, rendered.inline_images, images)

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
    summary.image_files = len(images)
    summary.image_bytes = sum(images.values())
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


def _count_html(summary: CheckSummary, recipient: Recipient, html: str | None,
                inline: tuple[InlineImage, ...], images: dict[Path, int]) -> None:
    if html is None:
        return
    size = len(html.encode("utf-8"))
    n = len(inline)
    first = summary.html_max == 0
    summary.html_min = size if first else min(summary.html_min, size)
    summary.html_max = max(summary.html_max, size)
    summary.images_min = n if first else min(summary.images_min, n)
    summary.images_max = max(summary.images_max, n)
    summary.images_total += n
    sizes = [image.size if image.size >= 0 else image.path.stat().st_size  # a chart, drawn
             for image in inline]
    for image, image_size in zip(inline, sizes, strict=True):
        images[image.path.resolve()] = image_size
    log.info("%s: html %d bytes, %d inline image(s) of %d bytes", recipient.address, size, n,
             sum(sizes))


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
    # Each inline image with its content (read at once: generated files are removed with
    # the renderer that made them)
    images: tuple[tuple[InlineImage, bytes], ...] = ()
    generated: frozenset[Path] = frozenset()  # attachments written for this message

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
                    f"({'generated' if a.path in self.generated else printable(str(a.path))})"
                    for a in self.attachments]
        else:
            out.append("# no attachments")
        if self.images:
            out.append(f"# {len(self.images)} inline image(s) in the HTML:")
            out += [f"  {printable(image.filename)}  {image.content_type}  "
                    f"{size_text(len(data))}  (cid:{printable(image.cid)})"
                    for image, data in self.images]
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
        renderer.settle()
        data = compose(rendered, AttachmentCache())
    except RenderFailure as err:
        raise RenderError([str(err)]) from None
    except AttachmentProblem as err:
        raise RenderError([f"{chosen.where} ({chosen.address}): {err}"]) from None
    try:
        images = tuple((image, image.path.read_bytes()) for image in rendered.inline_images)
    except OSError as err:
        raise RenderError([f"{chosen.where} ({chosen.address}): cannot read an inline image: "
                           f"{err}"]) from None
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    headers = tuple((name, str(value)) for name, value in parsed.items()
                    if name.lower() not in _HIDDEN_HEADERS)
    return Preview(number=chosen.index + 1, total=total, where=chosen.where, headers=headers,
                   envelope=tuple(rendered.envelope_recipients), bcc=rendered.bcc,
                   text=rendered.text, html=rendered.html, attachments=rendered.attachments,
                   size=len(data), data=data, images=images, generated=frozenset(
                       a.path for a in rendered.attachments if renderer.scratch.holds(a.path)))


def write_html(shown: Preview, path: Path) -> list[Path]:
    """The HTML body to ``path`` and its inline images into ``NAME_files/`` beside it, the
    ``cid:`` URLs pointing there: opened in a browser, it looks as the message will. Returns
    the files written. Raises UsageError when a file cannot be written."""
    assert shown.html is not None, "no HTML body to write"
    folder = path.with_name(path.stem + "_files")
    written: list[Path] = []
    urls: dict[str, str] = {}
    used: set[str] = set()
    try:
        for image, data in shown.images:
            name = image.filename
            n = 1
            while name in used:
                n += 1
                name = f"{n}-{image.filename}"
            used.add(name)
            folder.mkdir(exist_ok=True)
            (folder / name).write_bytes(data)
            written.append(folder / name)
            urls[image.cid] = urllib.parse.quote(f"{folder.name}/{name}")
        path.write_text(rewrite_references(shown.html, urls), encoding="utf-8")
    except OSError as err:
        raise UsageError(f"{err.filename or path}: cannot write: {err.strerror}") from None
    return [path, *written]


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
