"""Attachments: glob patterns to files, MIME types, each file read and encoded once per batch.

Files are sent base64-encoded, except a message (``.eml``, ``.mht``, ``.mhtml`` or ``type:
message/rfc822``): RFC 2046 5.2.1 forbids base64 there, so it goes as message/rfc822 written
as it is (7bit) when its content allows, and otherwise as application/octet-stream.
"""

from __future__ import annotations

import binascii
import glob
import mimetypes
import os
import re
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import NamedTuple

__all__ = ["Attachment", "AttachmentCache", "AttachmentProblem", "Part", "base64_lines",
           "content_type_for", "find", "seven_bit_message"]

DEFAULT_TYPE = "application/octet-stream"
MESSAGE_TYPE = "message/rfc822"
_MESSAGE_SUFFIXES = frozenset({".eml", ".mht", ".mhtml"})  # whatever the system's mime.types say
_HEADER_FIELD = re.compile(rb"[!-9;-~]+:")
_LITERAL = b"Content-Transfer-Encoding: 7bit\r\n\r\n"  # how a part written as it is ends


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
        if not os.path.exists(name):  # a link to nothing: no file, wherever it points
            continue
        real = os.path.realpath(name)
        if not (real + os.sep).startswith(inside):
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


class Part(NamedTuple):
    """One attachment's MIME part: its header block (with the blank line after it) and body."""

    head: bytes
    body: bytes

    @property
    def literal(self) -> bool:
        """Whether the body is written as it is (an attached message, 7bit), so that an
        enclosing boundary must not occur in it; base64 cannot hold one."""
        return self.head.endswith(_LITERAL)


_Key = tuple[str, int, int, str, str]  # path, size, mtime, name, type: a changed file is new


class AttachmentCache:
    """Encoded MIME parts keyed by file identity, bounded in bytes (LRU).

    A file shared by the whole batch is read and base64-encoded once. A part is kept only
    once it is asked for again: until then it waits among the few parts encoded last, which
    a recipient's own file (most likely never asked for again) soon leaves. Keeping those
    would push out the shared ones and hold memory for nothing, and taking fresh memory for
    each cost more than the encoding saved (70 us of a 220 us report with its own 40 KB PDF).
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.total = 0
        self._parts: OrderedDict[_Key, Part] = OrderedDict()
        self._recent: OrderedDict[_Key, Part] = OrderedDict()  # encoded once, not kept yet
        self._recent_total = 0

    def part(self, attachment: Attachment) -> bytes:
        """The attachment as a complete MIME part (headers + body), CRLF line endings."""
        head, body = self.pieces(attachment)
        return head + body

    def pieces(self, attachment: Attachment) -> Part:
        """The part with its header block and its body kept apart, so a large file is not
        copied once more to join them; the message joins everything once. Raises
        AttachmentProblem when the file is gone or unreadable now."""
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
        cached = self._recent.pop(key, None)
        if cached is not None:  # asked for again: a shared file, kept from now on
            self._recent_total -= _size(cached)
            self._keep(key, cached)
            return cached
        try:
            data = _read(attachment.path, stat.st_size)
        except OSError as err:
            raise AttachmentProblem(f"attachment {str(attachment.path)!r} cannot be read: "
                                    f"{err.strerror}") from None
        try:
            encoded = _encode(attachment, data)
        except UnicodeEncodeError:  # a name that is not UTF-8 on disk (surrogate escapes)
            raise AttachmentProblem(f"attachment {str(attachment.path)!r}: its file name is "
                                    "not valid UTF-8; rename the file") from None
        del data
        if _size(encoded) > self.max_bytes:
            return encoded  # never kept: not held here either
        self._recent[key] = encoded
        self._recent_total += _size(encoded)
        while len(self._recent) > _RECENT or (
                self._recent_total > _RECENT_BYTES and len(self._recent) > 1):
            _, dropped = self._recent.popitem(last=False)
            self._recent_total -= _size(dropped)
        return encoded

    def _keep(self, key: _Key, part: Part) -> None:
        if _size(part) > self.max_bytes:
            return
        self._parts[key] = part
        self.total += _size(part)
        while self.total > self.max_bytes:
            _, dropped = self._parts.popitem(last=False)
            self.total -= _size(dropped)


def _read(path: Path, size: int) -> bytes:
    """The file's bytes, expected to be ``size`` long: most often one system call to read
    them (a buffered reader takes five, and this runs once per message)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        chunks = [os.read(fd, size + 1)]
        while len(chunks[-1]) >= min(size + 1, _READ):  # grown meanwhile, or a huge file
            chunks.append(os.read(fd, _READ))
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_READ = 1 << 30  # at most this much per read (Linux reads at most about 2 GiB at once)


def _size(part: Part) -> int:
    return len(part.head) + len(part.body)


_RECENT, _RECENT_BYTES = 8, 4 * 1024 * 1024  # parts waiting to be asked for again


def _encode(attachment: Attachment, data: bytes) -> Part:
    """The file's part: base64, except a message (or multipart) type, which must not be
    base64 (RFC 2045 6.4, RFC 2046 5.2.1): a message written as it is where it can be,
    anything else of those types as application/octet-stream."""
    content_type = attachment.content_type
    if content_type.lower().startswith(("message/", "multipart/")):
        message = seven_bit_message(data) if content_type.lower().startswith("message/") \
            else None
        if message is not None:
            return Part(_part_head(attachment.filename, content_type, "7bit"), message)
        content_type = DEFAULT_TYPE
    return Part(_part_head(attachment.filename, content_type, "base64"), base64_lines(data))


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


def _part_head(filename: str, content_type: str, encoding: str) -> bytes:
    """The part's headers and the blank line after them; the file name as a quoted string,
    or in RFC 2231 form when it needs encoding, could read as an encoded-word, or is long."""
    head = (_parameter_header("Content-Type", content_type, "name", filename)
            + _parameter_header("Content-Disposition", "attachment", "filename", filename)
            + f"Content-Transfer-Encoding: {encoding}\r\n\r\n")
    return head.encode("ascii")


def base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character CRLF-terminated lines (57 input bytes each), as MIME requires.

    Encoded a block at a time; ``struct`` cuts each block into its lines and one join puts
    them back with CRLF, all in C (a 40 KB file: 45 us, against 90 us for a list of slices
    and 120 us for ``base64.encodebytes``). Memory stays near twice the encoded size.
    """
    if len(data) <= _B64_IN * _B64_BLOCK:  # most files: one block, joined once
        return _lines(binascii.b2a_base64(data, newline=False))
    view = memoryview(data)
    out = bytearray()
    for start in range(0, len(data), _B64_IN * _B64_BLOCK):
        out += _lines(binascii.b2a_base64(view[start:start + _B64_IN * _B64_BLOCK],
                                          newline=False))
    return bytes(out)


def _lines(encoded: bytes) -> bytes:
    """``encoded`` cut into lines of 76, each ended by CRLF."""
    lines: list[bytes] = []
    whole = len(encoded) // (_B64_LINE * _B64_GROUP) * _B64_LINE * _B64_GROUP
    for at in range(0, whole, _B64_LINE * _B64_GROUP):
        lines += _B64_CUT.unpack_from(encoded, at)
    lines += [encoded[at:at + _B64_LINE] for at in range(whole, len(encoded), _B64_LINE)]
    lines.append(b"")
    return b"\r\n".join(lines)


_B64_IN, _B64_LINE = 57, 76  # bytes in, characters out (before CRLF)
_B64_BLOCK = 1024  # lines encoded at a time: 57 KB in, small enough to stay in cache
_B64_GROUP = 64  # lines one unpack cuts
_B64_CUT = struct.Struct(f"{_B64_LINE}s" * _B64_GROUP)


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
    split into ``key*0*``, ``key*1*``... sections between characters when long. A name
    holding ``=?`` is RFC 2231 too: mail readers decode encoded-words in quoted names."""
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if text.isascii() and text.isprintable() and "=?" not in text and \
            len(key) + 2 + len(quoted) <= _MAX_LINE:
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
