"""Attachments: glob patterns to files, each with its MIME type and the type it travels as.

A message (``.eml``, ``.mht``, ``.mhtml`` or ``type: message/rfc822``) travels as it is
(7bit) when its content allows, and otherwise as application/octet-stream (see parts.py,
which encodes every file).
"""

from __future__ import annotations

import glob
import mimetypes
import os
import re
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

__all__ = ["DEFAULT_TYPE", "Attachment", "AttachmentProblem", "content_type_for", "find",
           "seven_bit_message"]

DEFAULT_TYPE = "application/octet-stream"
MESSAGE_TYPE = "message/rfc822"
_MESSAGE_SUFFIXES = frozenset({".eml", ".mht", ".mhtml"})  # whatever the system's mime.types say
_HEADER_FIELD = re.compile(rb"[!-9;-~]+:")


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
    if path.suffix.lower() in _MESSAGE_SUFFIXES:
        return MESSAGE_TYPE
    guessed, encoding = mimetypes.guess_type(path.name, strict=False)
    if guessed is None or encoding is not None:  # report.csv.gz is gzip data, not text/csv
        return DEFAULT_TYPE
    return guessed


def find(pattern: str, root: Path, content_type: str | None = None, *,
         real_root: Path | None = None) -> list[Attachment]:
    """Files matching ``pattern`` under ``root``, sorted; refuses any that resolve outside it.

    The check runs after templating, so a recipient field like ``../../etc`` cannot reach
    files outside the root, and symlinks are judged by where they point. ``real_root``:
    ``root`` resolved already (a renderer resolves it once, not once per recipient).
    """
    real_root = real_root or root.resolve()
    inside = str(real_root).rstrip(os.sep) + os.sep
    full = pattern if os.path.isabs(pattern) else str(root / pattern)
    if glob.has_magic(full):
        names = sorted(set(_glob(full)))
    else:  # one file or none: what glob would find, without listing a folder
        names = [full] if os.path.lexists(full) else []
    found = []
    seen: set[str] = set()
    for name in names:
        real = os.path.realpath(name)
        if not (real + os.sep).startswith(inside):
            if not os.path.exists(name):  # a link to nothing: no file, wherever it points
                continue
            raise AttachmentProblem(f"attachment {_shown(name)} is outside the attachments "
                                    f"root {real_root}; set attachments_root if that is "
                                    "intended")
        try:
            stat = os.stat(real)
        except (OSError, ValueError):
            continue
        if not S_ISREG(stat.st_mode) or real in seen:  # each file once, under its first name
            continue
        seen.add(real)
        if not _is_unicode(name):
            raise AttachmentProblem(f"attachment {_shown(name)} has a name that is not valid "
                                    "UTF-8; rename the file")
        if not os.access(real, os.R_OK):
            raise AttachmentProblem(f"attachment {_shown(name)} cannot be read; check its "
                                    "permissions")
        path = Path(name)
        found.append(Attachment(path=path, filename=path.name,
                                content_type=_sendable(real, content_type_for(path, content_type)),
                                size=stat.st_size))
    return found


def _sendable(path: str, content_type: str) -> str:
    """The type the file will travel as, so the report says what was sent: a message that
    cannot go as it is goes as application/octet-stream (see ``_encode``, which decides
    again if the file changed meanwhile)."""
    kind = content_type.lower()
    if kind.startswith("multipart/"):
        return DEFAULT_TYPE
    if kind.startswith("message/"):
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError:
            return content_type  # the send says what is wrong with it
        if seven_bit_message(data) is None:
            return DEFAULT_TYPE
    return content_type


def _glob(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, except that ``**`` does not descend into
    symbolic links to folders: a link to a parent folder would otherwise be followed round
    and round (one file found 41 times; with two such links, billions of paths). A link
    named in the pattern itself is still followed."""
    parts = pattern.split(os.sep)
    if "**" not in parts:
        return glob.glob(pattern)
    at = parts.index("**")
    head = os.sep.join(parts[:at]) or (os.sep if pattern.startswith(os.sep) else os.curdir)
    tail = parts[at + 1:]
    bases = glob.glob(head) if glob.has_magic(head) else [head]
    found: list[str] = []
    for base in bases:
        for folder in _folders(base):
            if tail:
                found += _glob(os.path.join(glob.escape(folder), *tail))
            else:  # a trailing ** matches everything below
                found += [os.path.join(folder, entry.name) for entry in _entries(folder)]
    return found


def _folders(base: str) -> list[str]:
    """``base`` and every folder below it that is not hidden and not a symbolic link."""
    folders, pending = [], [base]
    while pending:
        folder = pending.pop()
        folders.append(folder)
        pending += [os.path.join(folder, entry.name) for entry in _entries(folder)
                    if entry.is_dir(follow_symlinks=False)]
    return folders


def _entries(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return [entry for entry in entries if not entry.name.startswith(".")]
    except (OSError, ValueError):  # gone, unreadable, or a name with a NUL in it
        return []


def _is_unicode(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a byte that is not UTF-8, decoded by Python as a surrogate
        return False
    return True


def _shown(name: str) -> str:
    """A path for a message: bytes that are not UTF-8 shown escaped, never as raw bytes."""
    shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return repr(shown) if shown == name else f"'{shown}'"


def seven_bit_message(data: bytes) -> bytes | None:
    """``data`` with CRLF line ends, if it can travel as a 7bit message/rfc822 body: ASCII
    without NUL or a lone CR, lines of at most 998 octets, a message that a mail reader
    parses without a defect. None otherwise (8-bit content would need 8BITMIME, which the
    messages never ask for; a broken message is better sent as a plain file)."""
    if not data.isascii() or b"\0" in data or not _HEADER_FIELD.match(data):
        return None
    if b"\r" in data:
        if data.count(b"\r") != data.count(b"\r\n"):
            return None
        data = data.replace(b"\r\n", b"\n")
    if max(map(len, data.split(b"\n"))) > 998:
        return None
    data = data.replace(b"\n", b"\r\n")
    return data if _readable(data) else None


def _readable(data: bytes) -> bool:
    """Whether the email package reads the message without a defect in any part or header
    (once per file and batch, like the encoding)."""
    from email import message_from_bytes, policy

    message = message_from_bytes(data, policy=policy.default)
    return all(not part.defects and not any(value.defects for value in part.values())
               for part in message.walk())
