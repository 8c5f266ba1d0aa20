"""``mailbatch preview``: one recipient's message exactly as it would be sent, for a person.

The message is rendered and composed as a run would, then read back from its bytes, so the
headers shown are those a mail reader will see. Nothing is sent and no secret is read.
"""

from __future__ import annotations

import binascii
import datetime as dt
import email
import email.policy
import logging
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from mailbatch.cli.boundary import printable, size_text
from mailbatch.errors import RenderError, UsageError
from mailbatch.job.model import Job
from mailbatch.job.recipients import Recipient, iter_recipients
from mailbatch.message.attachments import Attachment, AttachmentProblem
from mailbatch.message.compose import compose
from mailbatch.message.inline import InlineImage, rewrite_references
from mailbatch.message.parts import AttachmentCache
from mailbatch.message.proof import prove
from mailbatch.message.render import Renderer, RenderFailure

__all__ = ["Preview", "preview", "write_html"]

log = logging.getLogger(__name__)

_HIDDEN_HEADERS = {"mime-version", "content-type", "content-transfer-encoding"}


@dataclass(frozen=True)
class Preview:
    """One message as its recipient will get it, plus what only the envelope shows."""

    number: int  # 1-based position in the recipient list
    total: int
    where: str
    headers: tuple[tuple[str, str], ...]  # as decoded from the composed message
    envelope: tuple[str, ...]  # every address the server delivers to (To, Cc and Bcc)
    bcc: tuple[str, ...]  # as people write them: Name <address>
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
    head, _, _ = data.partition(b"\r\n\r\n")
    parsed = email.message_from_bytes(_joined_words(head) + b"\r\n\r\n",
                                      policy=email.policy.default)
    headers = tuple((name, str(value)) for name, value in parsed.items()
                    if name.lower() not in _HIDDEN_HEADERS)
    return Preview(number=chosen.index + 1, total=total, where=chosen.where, headers=headers,
                   envelope=tuple(rendered.envelope_recipients),
                   bcc=tuple(str(mailbox) for mailbox in rendered.bcc),
                   text=rendered.text, html=rendered.html, attachments=rendered.attachments,
                   size=len(data), data=data, images=images, generated=frozenset(
                       a.path for a in rendered.attachments if renderer.scratch.holds(a.path)))


def write_html(shown: Preview, path: Path) -> list[Path]:
    """The HTML body to ``path`` and its inline images into ``NAME_files/`` beside it, the
    ``cid:`` URLs pointing there: opened in a browser, it looks as the message will. Returns
    the files written. Raises UsageError when a file cannot be written."""
    assert shown.html is not None, "no HTML body to write"
    if path.name in ("", ".", "..") or path.is_dir():
        raise UsageError(f"{path}: --html-out names a folder; give a file name, such as "
                         "preview.html")
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


_WORD = rb"=\?utf-8\?([bq])\?([^?\s]*)\?="
_ADJACENT_WORDS = re.compile(rb"%s(?:\s+%s)+" % (_WORD, _WORD), re.IGNORECASE)


def _joined_words(head: bytes) -> bytes:
    """The header block with each run of adjacent encoded-words (as compose writes a long
    name or subject) joined into one: Python's parser keeps the space between them (CPython
    gh-128110), which RFC 2047 6.2 says is not part of the text and mail readers drop."""
    def join(run: re.Match[bytes]) -> bytes:
        data = b"".join(binascii.a2b_base64(text) if mode.lower() == b"b" else
                        binascii.a2b_qp(text, header=True)
                        for mode, text in re.findall(_WORD, run[0], re.IGNORECASE))
        return b"=?utf-8?b?" + binascii.b2a_base64(data, newline=False) + b"?="

    return _ADJACENT_WORDS.sub(join, head)


def _matches(recipient: Recipient, wanted: str) -> bool:
    if wanted.isdigit():
        return recipient.index + 1 == int(wanted)
    return recipient.key == wanted.lower()
