"""Inline images: the files an HTML body shows by ``cid:``, one recipient's set, their MIME parts.

A template asks for an image with ``inline_image(path)`` (or ``chart(...)``, see charts.py),
which returns the ``cid:`` URL to put in ``src``; the job's ``inline_images`` key names images
the HTML can refer to as ``cid:NAME``. After rendering, every ``cid:`` the HTML refers to must
be one of these (else the recipient's message fails to render), and only those referred to
travel with the message, as parts of its ``multipart/related`` body. Files are found with the
attachments' rules (inside the attachments root) and encoded once per batch by the
AttachmentCache, like a shared attachment.
"""

from __future__ import annotations

import contextvars
import glob
import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mailbatch.message.attachments import Attachment, AttachmentProblem, find
from mailbatch.message.drawer import ensure
from mailbatch.message.parts import AttachmentCache

__all__ = ["ImageSet", "InlineImage", "collecting", "current", "inline_parts", "place_generated",
           "referenced", "rewrite_references"]


@dataclass(frozen=True)
class InlineImage:
    """One image of a message's related body; ``cid`` is what the HTML writes after ``cid:``."""

    path: Path
    filename: str  # ASCII letters, digits, '.', '_', '-' only: no header encoding needed
    content_type: str
    size: int  # -1 for a chart still being drawn when the message rendered
    cid: str


# The cid: URLs of src/background attributes and of CSS url(...), which a mail client loads.
_REFERENCE = re.compile(r"""(?i)(?:=\s*["']?|url\(\s*["']?)cid:([^\s"'<>)]+)""")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def referenced(html: str) -> list[str]:
    """The cid: names the HTML refers to, each once, in order of appearance."""
    if "cid:" not in html.lower():
        return []
    return list(dict.fromkeys(_REFERENCE.findall(html)))


def rewrite_references(html: str, urls: dict[str, str]) -> str:
    """The HTML with each ``cid:NAME`` reference in ``urls`` replaced by its URL (for a
    preview written to files)."""
    def replace(match: re.Match[str]) -> str:
        url = urls.get(match[1])
        if url is None:
            return match[0]
        return match[0][:match.start(1) - match.start(0) - 4] + url

    return _REFERENCE.sub(replace, html)


def safe_filename(name: str, fallback: str = "image") -> str:
    """The name as a plain ASCII file name (a hint to the client, never encoded), short
    enough for its header line to stay within 78 characters."""
    cleaned = _UNSAFE.sub("-", name).strip(".-")
    if len(cleaned) > 36:
        stem, dot, suffix = cleaned.rpartition(".")
        cleaned = (stem[:36 - len(suffix) - 1] + dot + suffix) if dot and len(suffix) < 6 \
            else cleaned[:36]
    return cleaned or fallback


class ImageSet:
    """The images one recipient's templates asked for, by cid; only the referenced are sent."""

    def __init__(self, root: Path, domain: str,
                 named: Callable[[str], InlineImage | None]) -> None:
        self.root = root
        self.domain = domain
        self.by_cid: dict[str, InlineImage] = {}
        self._named = named  # the job's inline_images, resolved for this recipient on demand

    def add_file(self, path: str) -> str:
        """``inline_image(path)``: the file (under the attachments root) as an inline image."""
        found = find(glob.escape(path), self.root)
        if not found:
            raise AttachmentProblem(f"inline image {path!r} not found under {self.root}; add "
                                    "the file or correct the path")
        return self.add(found[0])

    def add(self, attachment: Attachment) -> str:
        """An image file (an Attachment as found) under a cid derived from what it is."""
        if not attachment.content_type.startswith("image/"):
            raise AttachmentProblem(f"inline image {str(attachment.path)!r} is "
                                    f"{attachment.content_type}, not an image (use "
                                    "attachments for other files)")
        digest = hashlib.sha256(str(attachment.path.resolve()).encode()).hexdigest()[:12]
        name = safe_filename(attachment.filename)
        cid = f"{name}.{digest}@{self.domain}"
        self.by_cid[cid] = InlineImage(attachment.path, name, attachment.content_type,
                                       attachment.size, cid)
        return "cid:" + cid

    def add_generated(self, path: Path, filename: str, content_type: str, size: int) -> str:
        """A generated image (a chart), whose file name is the digest of what it shows."""
        cid = f"{path.stem}@{self.domain}"
        self.by_cid[cid] = InlineImage(path, filename, content_type, size, cid)
        return "cid:" + cid

    def resolve(self, html: str, where: str) -> tuple[InlineImage, ...]:
        """The images the HTML refers to, in order. Raises AttachmentProblem for a cid: that
        names no image (a broken picture in every mail client)."""
        images = []
        for cid in referenced(html):
            image = self.by_cid.get(cid) or self._named(cid)
            if image is None:
                raise AttachmentProblem(
                    f"{where}: the HTML refers to cid:{cid}, which is no inline image; name it "
                    "under inline_images in the job, or write src=\"{{ inline_image('path') }}\"")
            images.append(image)
        return tuple(images)


_current: contextvars.ContextVar[ImageSet | None] = contextvars.ContextVar(
    "mailbatch_inline_images", default=None)


@contextmanager
def collecting(images: ImageSet) -> Iterator[ImageSet]:
    """Make ``images`` the set the template helpers add to while one recipient renders."""
    token = _current.set(images)
    try:
        yield images
    finally:
        _current.reset(token)


def current() -> ImageSet:
    images = _current.get()
    if images is None:  # a helper called outside a message's body (a subject, say)
        raise AttachmentProblem("images can only be placed in the HTML or Markdown body")
    return images


def place_generated(path: Path, filename: str, content_type: str, size: int) -> str:
    """A generated image (a chart) in the message being rendered; its ``cid:`` URL."""
    return current().add_generated(path, filename, content_type, size)


def inline_image(path: str) -> str:
    """Template helper: ``<img src="{{ inline_image('images/logo.png') }}">``."""
    return current().add_file(str(path))


def inline_parts(images: tuple[InlineImage, ...],
                 cache: AttachmentCache) -> list[tuple[bytes, bytes]]:
    """Each image as (its Content-* lines, base64 body); the body is the cache's, encoded
    once per batch for a file that many messages show."""
    parts = []
    for image in images:
        if image.size < 0:  # a chart: drawn by now, unless this message rendered just now
            ensure(image.path)
        _, body = cache.pieces(Attachment(image.path, image.filename, image.content_type,
                                          image.size))
        head = (f"Content-Type: {image.content_type}\r\n"
                "Content-Transfer-Encoding: base64\r\n"
                f"Content-ID: <{image.cid}>\r\n"
                f'Content-Disposition: inline; filename="{image.filename}"\r\n')
        parts.append((head.encode("ascii"), body))
    return parts
