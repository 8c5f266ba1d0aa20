"""Attachments: glob patterns to files, MIME types, each file read and encoded once per batch."""

from __future__ import annotations

import binascii
import glob
import mimetypes
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Attachment", "AttachmentCache", "AttachmentProblem", "base64_lines", "content_type_for",
           "find"]

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
    seen: set[Path] = set()
    for name in sorted(set(_glob(full))):
        path = Path(name)
        real = path.resolve()
        if not real.is_relative_to(real_root):
            raise AttachmentProblem(f"attachment {_shown(name)} is outside the attachments "
                                    f"root {real_root}; set attachments_root if that is "
                                    "intended")
        if not real.is_file() or real in seen:  # each file once, under its first name
            continue
        seen.add(real)
        if not _is_unicode(name):
            raise AttachmentProblem(f"attachment {_shown(name)} has a name that is not valid "
                                    "UTF-8; rename the file")
        try:
            size = real.stat().st_size
            if not os.access(real, os.R_OK):
                raise PermissionError
        except OSError:
            raise AttachmentProblem(f"attachment {_shown(name)} cannot be read; check its "
                                    "permissions") from None
        found.append(Attachment(path=path, filename=path.name,
                                content_type=content_type_for(path, content_type), size=size))
    return found


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


class AttachmentCache:
    """Encoded MIME parts keyed by file identity, bounded in bytes (LRU).

    A file shared by the whole batch is read and base64-encoded once; per-recipient files
    cycle through without growing memory.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.total = 0
        self._parts: OrderedDict[tuple, tuple[bytes, bytes]] = OrderedDict()

    def part(self, attachment: Attachment) -> bytes:
        """The attachment as a complete MIME part (headers + base64 body), CRLF line endings."""
        head, body = self.pieces(attachment)
        return head + body

    def pieces(self, attachment: Attachment) -> tuple[bytes, bytes]:
        """The part as (header block with its blank line, base64 body): kept apart, so a
        large file is not copied once more to join them; the message joins everything once.
        Raises AttachmentProblem when the file is gone or unreadable now."""
        try:
            stat = attachment.path.stat()
        except OSError as err:
            raise AttachmentProblem(f"attachment {str(attachment.path)!r} cannot be read: "
                                    f"{err.strerror}") from None
        key = (str(attachment.path), stat.st_size, stat.st_mtime_ns, attachment.filename,
               attachment.content_type)
        cached = self._parts.get(key)
        if cached is not None:
            self._parts.move_to_end(key)
            return cached
        try:
            data = attachment.path.read_bytes()
        except OSError as err:
            raise AttachmentProblem(f"attachment {str(attachment.path)!r} cannot be read: "
                                    f"{err.strerror}") from None
        encoded = _part_head(attachment.filename, attachment.content_type), base64_lines(data)
        del data
        size = len(encoded[0]) + len(encoded[1])
        if size <= self.max_bytes:
            self._parts[key] = encoded
            self.total += size
            while self.total > self.max_bytes:
                _, (head, body) = self._parts.popitem(last=False)
                self.total -= len(head) + len(body)
        return encoded


def _part_head(filename: str, content_type: str) -> bytes:
    """The part's headers and the blank line after them; the file name as a quoted string,
    or in RFC 2231 form when it needs encoding or is long."""
    head = (_parameter_header("Content-Type", content_type, "name", filename)
            + _parameter_header("Content-Disposition", "attachment", "filename", filename)
            + "Content-Transfer-Encoding: base64\r\n\r\n")
    return head.encode("ascii")


def base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character CRLF-terminated lines (57 input bytes each), as MIME requires.

    Encoded a block of lines at a time, each laid out in lines by strided copies, all in C.
    (``base64.encodebytes`` loops over the lines in Python and joins a list of them: slower,
    and for a 20 MB file over 100 MB at its peak; this stays near twice the encoded size.)
    """
    whole, tail = divmod(len(data), _B64_IN)
    last = binascii.b2a_base64(data[whole * _B64_IN:], newline=False) + b"\r\n" if tail else b""
    out = bytearray(whole * _B64_OUT + len(last))
    for start in range(0, whole * _B64_IN, _B64_IN * _B64_BLOCK):
        encoded = binascii.b2a_base64(data[start:min(start + _B64_IN * _B64_BLOCK,
                                                     whole * _B64_IN)], newline=False)
        lines = len(encoded) // _B64_LINE
        block = bytearray(lines * _B64_OUT)
        for column in range(_B64_LINE):
            block[column::_B64_OUT] = encoded[column::_B64_LINE]
        block[_B64_LINE::_B64_OUT] = b"\r" * lines
        block[_B64_LINE + 1::_B64_OUT] = b"\n" * lines
        at = start // _B64_IN * _B64_OUT
        out[at:at + len(block)] = block
    out[whole * _B64_OUT:] = last
    return bytes(out)


_B64_IN, _B64_LINE, _B64_OUT = 57, 76, 78  # bytes in, characters out, with CRLF
_B64_BLOCK = 1024  # lines encoded at a time: 57 KB in, small enough to stay in cache


# RFC 2231 / RFC 5987 attr-char: what an extended parameter value may show unencoded.
_ATTR_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                        "!#$&+-.^_`|~")
_MAX_LINE = 78


def _parameter_header(name: str, value: str, key: str, text: str) -> str:
    """``name: value; key=text``, folded before the parameter when the line would be long."""
    params = _parameter(key, text)
    first = f"{name}: {value};"
    if len(params) == 1 and len(first) + 1 + len(params[0]) <= _MAX_LINE:
        return f"{first} {params[0]}\r\n"
    return first + "\r\n " + ";\r\n ".join(params) + "\r\n"


def _parameter(key: str, text: str) -> list[str]:
    """``key="text"`` for printable ASCII that fits a line; else RFC 2231 ``key*=utf-8''...``,
    split into ``key*0*``, ``key*1*``... sections between characters when long."""
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if text.isascii() and text.isprintable() and len(key) + 2 + len(quoted) <= _MAX_LINE:
        return [f"{key}={quoted}"]
    encoded = [char if char in _ATTR_CHARS else
               "".join(f"%{byte:02X}" for byte in char.encode("utf-8")) for char in text]
    if len(key) + 10 + sum(map(len, encoded)) <= _MAX_LINE:
        return [f"{key}*=utf-8''{''.join(encoded)}"]
    sections: list[str] = []
    current = "utf-8''"
    for piece in encoded:
        if len(current) + len(piece) > _MAX_LINE - len(key) - 10:  # room for  key*NN*=...;
            sections.append(current)
            current = ""
        current += piece
    sections.append(current)
    return [f"{key}*{number}*={section}" for number, section in enumerate(sections)]
