"""``mailbatch check``: render and compose every message, read every file, send nothing.

It renders exactly what a run would send, with the same Renderer, proof and compose(); it
writes no journal, report or outbox, and touches the network only with ``connect=True``.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailbatch.batch.journal import Journal
from mailbatch.batch.report import cannot_create_in
from mailbatch.cli.boundary import size_text
from mailbatch.errors import RenderError
from mailbatch.job.model import Job
from mailbatch.job.recipients import Recipient, duplicate_failure, iter_recipients
from mailbatch.message.attachments import Attachment, AttachmentProblem
from mailbatch.message.compose import compose
from mailbatch.message.inline import InlineImage
from mailbatch.message.parts import AttachmentCache
from mailbatch.message.render import Rendered, Renderer, RenderFailure
from mailbatch.message.renderpool import RenderPool, Result
from mailbatch.smtp.credentials import describe, get_secret
from mailbatch.smtp.transport import SmtpTransport

__all__ = ["CheckSummary", "check"]

log = logging.getLogger(__name__)


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
    # job key -> (recipients whose value gave more addresses than the template names,
    # the first such recipient, the addresses it gave): each gets a copy, so check says so
    widened: dict[str, tuple[int, str, tuple[str, ...], int]] = field(default_factory=dict)
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

    def notes(self) -> list[str]:
        """What is worth knowing but not wrong: a field that gave more addresses than named."""
        return [f"{key} gives more addresses than its template names ({named}) for {count} "
                f"recipient(s), e.g. {example}: {', '.join(addresses)}; each address gets "
                "the message" for key, (count, example, addresses, named) in self.widened.items()]

    def document(self, path: Path) -> dict[str, Any]:
        """The summary as ``check --json`` prints it (shape documented in the README)."""
        html = {"min_bytes": self.html_min, "max_bytes": self.html_max} if self.html_max \
            else None
        images = {"min_per_message": self.images_min, "max_per_message": self.images_max,
                  "total": self.images_total, "distinct_files": self.image_files,
                  "distinct_bytes": self.image_bytes} if self.html_max else None
        return {
            "job": self.job, "job_file": str(path), "batch": self.batch,
            "recipients": self.recipients,
            "attachments": {"min_per_message": self.attachments_min,
                            "max_per_message": self.attachments_max,
                            "total": self.attachments_total,
                            "distinct_files": self.attachment_files,
                            "distinct_bytes": self.attachment_bytes},
            "messages": {"total_bytes": self.total_bytes, "largest_bytes": self.largest_bytes,
                         "largest_to": self.largest_to},
            "html": html, "images": images,
            "server": self.server, "password": self.password,
            "login": {"ok": True, "max_size": self.server_max_size} if self.connected
            else None,
            "warnings": list(self.warnings), "notes": self.notes(),
            "widened": [{"key": key, "recipients": count, "example": example,
                         "addresses": list(addresses), "named": named}
                        for key, (count, example, addresses, named) in self.widened.items()],
        }

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
        lines += [f"  note:        {note}" for note in self.notes()]
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
    if job.state_dir is not None and (unusable := cannot_create_in(job.state_dir)):
        folder, why = unusable
        what = "is a file, not a folder" if folder.is_file() else f"cannot be written ({why})"
        summary.warnings.append(f"state_dir: {folder} {what}; 'mailbatch run' would stop "
                                "there (exit 74) before sending; choose a folder it can write")
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
            except RenderFailure as err:  # it names the recipient
                failures.append((recipient.index, str(err)))
                continue
            except (AttachmentProblem, ValueError) as err:  # a file gone since it was found
                failures.append((recipient.index,
                                 f"{recipient.where} ({recipient.address}): {err}"))
                continue
            _count(summary, recipient, rendered.attachments, size, files)
            _widened(summary, rendered)
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


def _widened(summary: CheckSummary, rendered: Rendered) -> None:
    for key, named, addresses in rendered.widened:
        count, example, shown, _ = summary.widened.get(key, (0, rendered.recipient.address,
                                                            addresses, named))
        summary.widened[key] = (count + 1, example, shown, named)


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
