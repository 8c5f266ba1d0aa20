"""The spool: rendered messages kept on disk from prepare() to sending, so each is rendered once.

Rendering every message before the first is sent is a guarantee; rendering each a second time
to send it was only a way to keep memory flat, and for templates with tables it is the largest
cost of a batch. The spool keeps memory flat instead: one unnamed temporary file (deleted by
the OS even if the process is killed), written and read in recipient order, one record at a
time. Records hold only strings and numbers (``marshal``), never attachment contents.
"""

from __future__ import annotations

import contextlib
import marshal
import struct
import tempfile
from pathlib import Path
from typing import IO, Any

from mailbatch.errors import StateError
from mailbatch.job.addresses import Address
from mailbatch.job.recipients import Recipient
from mailbatch.message.attachments import Attachment
from mailbatch.message.inline import InlineImage
from mailbatch.message.render import Rendered

__all__ = ["Spool"]

_LENGTH = struct.Struct("<I")
_Record = tuple[Any, ...]
# (index, key, sender, to, cc, bcc, reply_to, subject, headers, text, html,
#  ((path, filename, content_type, size), ...), message_id, widened,
#  ((path, filename, content_type, size, cid), ...) of the inline images),
#  each address a plain (name, address) tuple
# Generated files (charts, CSV, zip) are in the renderer's scratch folder: a record holds
# their paths, like any attachment's, never their contents.


class Spool:
    """Write every rendered message with ``add``, then ``take`` them back in the same order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            self._file: IO[bytes] = tempfile.TemporaryFile(  # noqa: SIM115 (closed in close())
                dir=folder, prefix="mailbatch-spool-")
        except OSError as err:
            raise StateError(f"{folder}: cannot create a temporary file for the rendered "
                             f"messages: {err.strerror}; check the folder is writable") from None
        self._reading = False
        self._next: _Record | None = None
        self.count = 0

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the file. Records still in the write buffer are of no use any more: a full
        disk found here must not replace the error that is ending the run."""
        with contextlib.suppress(OSError):
            self._file.close()

    def finish(self) -> None:
        """Write out what ``add`` buffered, so a full disk is found before anything is sent."""
        try:
            self._file.flush()
        except OSError as err:
            raise self._full(err) from None

    def _full(self, err: OSError) -> StateError:
        return StateError(f"{self.folder}: cannot write the rendered messages to a temporary "
                          f"file: {err.strerror or err}; free some disk space, then run again")

    def add(self, message: Rendered) -> None:
        """Append one message (before the first ``take``)."""
        assert not self._reading, "add() after take()"
        try:
            record = marshal.dumps((
                message.recipient.index, message.recipient.key, tuple(message.sender),
                _plain(message.to), _plain(message.cc), _plain(message.bcc),
                _plain(message.reply_to), message.subject,
                tuple((name, value if isinstance(value, str) else _plain(value))
                      for name, value in message.headers),
                message.text, message.html,
                tuple((str(a.path), a.filename, a.content_type, a.size)
                      for a in message.attachments),
                message.message_id, message.widened,
                tuple((str(i.path), i.filename, i.content_type, i.size, i.cid)
                      for i in message.inline_images)))
        except ValueError:  # not plain strings (a str subclass, say): take() renders it again
            return
        try:
            self._file.write(_LENGTH.pack(len(record)) + record)
        except OSError as err:
            raise self._full(err) from None
        self.count += 1

    def take(self, recipient: Recipient) -> Rendered | None:
        """The message spooled for ``recipient``, or None if it was not spooled. Messages of
        recipients passed over (already sent, say) are skipped; later ones stay."""
        if not self._reading:
            try:
                self._file.seek(0)
            except OSError as err:
                raise self._full(err) from None
            self._reading = True
        while True:
            if self._next is None:
                self._next = self._read()
                if self._next is None:
                    return None
            index, key = self._next[0], self._next[1]
            if index < recipient.index:
                self._next = None
                continue
            if index != recipient.index or key != recipient.key:
                return None
            record, self._next = self._next, None
            return _rendered(recipient, record)

    def _read(self) -> _Record | None:
        head = self._file.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack(head)
        return marshal.loads(self._file.read(length))  # type: ignore[no-any-return]


def _plain(mailboxes: tuple[Address, ...]) -> tuple[tuple[str, str], ...]:
    """Addresses as plain tuples: marshal writes no tuple subclass."""
    return tuple((name, address) for name, address in mailboxes)


def _mailboxes(pairs: tuple[tuple[str, str], ...]) -> tuple[Address, ...]:
    return tuple(Address(name, address) for name, address in pairs)


def _rendered(recipient: Recipient, record: _Record) -> Rendered:
    (_, _, sender, to, cc, bcc, reply_to, subject, headers, text, html, attachments,
     message_id, widened, inline_images) = record
    return Rendered(
        recipient=recipient, sender=Address(*sender), to=_mailboxes(to), cc=_mailboxes(cc),
        bcc=_mailboxes(bcc), reply_to=_mailboxes(reply_to), subject=subject,
        headers=tuple((name, value if isinstance(value, str) else _mailboxes(value))
                      for name, value in headers),
        text=text, html=html,
        attachments=tuple(Attachment(path=Path(path), filename=filename,
                                     content_type=content_type, size=size)
                          for path, filename, content_type, size in attachments),
        message_id=message_id,
        inline_images=tuple(InlineImage(Path(path), filename, content_type, size, cid)
                            for path, filename, content_type, size, cid in inline_images),
        widened=widened)
