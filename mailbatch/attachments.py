"""Attachments: glob patterns to files, MIME types, each file read and encoded once per batch."""

from __future__ import annotations

import base64
import glob
import mimetypes
import os
from collections import OrderedDict
from dataclasses import dataclass
from email.message import MIMEPart
from email.policy import SMTP
from pathlib import Path

__all__ = ["Attachment", "AttachmentCache", "AttachmentProblem", "content_type_for", "find"]

DEFAULT_TYPE = "application/octet-stream"


class AttachmentProblem(Exception):
    """Raised for one recipient's attachment; the renderer turns it into a render failure."""


@dataclass(frozen=True)
class Attachment:
    path: Path
    filename: str
    content_type: str
    size: int


def content_type_for(path: Path, explicit: str | None = None) -> str:
    """The explicit type, else what ``mimetypes`` guesses, else application/octet-stream."""
    if explicit:
        return explicit
    guessed, encoding = mimetypes.guess_type(path.name, strict=False)
    if guessed is None or encoding is not None:  # report.csv.gz is gzip data, not text/csv
        return DEFAULT_TYPE
    return guessed


def find(pattern: str, root: Path, content_type: str | None = None) -> list[Attachment]:
    """Files matching ``pattern`` under ``root``, sorted; refuses any that resolve outside it.

    The check runs after templating, so a recipient field like ``../../etc`` cannot reach
    files outside the root, and symlinks are judged by where they point.
    """
    real_root = root.resolve()
    full = pattern if os.path.isabs(pattern) else str(root / pattern)
    found = []
    for name in sorted(glob.glob(full, recursive=True)):
        path = Path(name)
        real = path.resolve()
        if not real.is_relative_to(real_root):
            raise AttachmentProblem(f"attachment {name!r} is outside the attachments root "
                                    f"{real_root}; set attachments_root if that is intended")
        if not real.is_file():
            continue
        try:
            size = real.stat().st_size
            if not os.access(real, os.R_OK):
                raise PermissionError
        except OSError:
            raise AttachmentProblem(f"attachment {name!r} cannot be read; check its "
                                    "permissions") from None
        found.append(Attachment(path=path, filename=path.name,
                                content_type=content_type_for(path, content_type), size=size))
    return found


class AttachmentCache:
    """Encoded MIME parts keyed by file identity, bounded in bytes (LRU).

    A file shared by the whole batch is read and base64-encoded once; per-recipient files
    cycle through without growing memory.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.total = 0
        self._parts: OrderedDict[tuple, bytes] = OrderedDict()

    def part(self, attachment: Attachment) -> bytes:
        """The attachment as a complete MIME part (headers + base64 body), CRLF line endings."""
        try:
            stat = attachment.path.stat()
        except OSError as err:
            raise AttachmentProblem(f"attachment {str(attachment.path)!r} cannot be read: "
                                    f"{err.strerror}") from None
        key = (str(attachment.path), stat.st_size, stat.st_mtime_ns, attachment.content_type)
        cached = self._parts.get(key)
        if cached is not None:
            self._parts.move_to_end(key)
            return cached
        try:
            data = attachment.path.read_bytes()
        except OSError as err:
            raise AttachmentProblem(f"attachment {str(attachment.path)!r} cannot be read: "
                                    f"{err.strerror}") from None
        encoded = _encode_part(data, attachment.filename, attachment.content_type)
        if len(encoded) <= self.max_bytes:
            self._parts[key] = encoded
            self.total += len(encoded)
            while self.total > self.max_bytes:
                _, dropped = self._parts.popitem(last=False)
                self.total -= len(dropped)
        return encoded


def _encode_part(data: bytes, filename: str, content_type: str) -> bytes:
    """Headers from the email package (RFC 2231 file names), body base64 in 76-column lines."""
    header = MIMEPart(policy=SMTP)
    maintype, _, subtype = content_type.partition("/")
    header["Content-Type"] = f"{maintype}/{subtype}"
    header.set_param("name", filename)
    header["Content-Disposition"] = "attachment"
    header.set_param("filename", filename, header="Content-Disposition")
    header["Content-Transfer-Encoding"] = "base64"
    head = b"".join(SMTP.fold_binary(name, value) for name, value in header.items())
    return head + b"\r\n" + _base64_lines(data)


def _base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character CRLF-terminated lines (57 input bytes each), as MIME requires."""
    encoded = base64.encodebytes(data)  # 76-column lines ending in \n, done in C
    return encoded.replace(b"\n", b"\r\n")
