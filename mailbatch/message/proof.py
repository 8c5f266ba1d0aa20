"""The render pass proves, for every message, what sending and reporting it will need, so that
nothing depending on recipient data can fail after the first message was sent.

What is proved: the message has at least one envelope recipient and a To address; every
header encodes (the message is composed once with empty bodies and no attachments, then
thrown away); every body encodes (a body can fail only on text that is not valid Unicode,
checked on its own: encoding it all here would cost as much as composing it again, and
composing attachments would copy each once more per message); attachment parts come from
files whose names ``find`` already checked; every text that goes into the report row
(address, attachment names and types) is valid Unicode, so the JSON and CSV reports can be
written as UTF-8.
"""

from __future__ import annotations

import dataclasses

from mailbatch.message.attachments import Attachment
from mailbatch.message.compose import compose
from mailbatch.message.inline import InlineImage
from mailbatch.message.parts import AttachmentCache
from mailbatch.message.render import Rendered, RenderFailure
from mailbatch.message.template_errors import unencodable

__all__ = ["prove"]

_NO_ATTACHMENTS = AttachmentCache(max_bytes=0)  # never used: the proof composes none


def prove(message: Rendered) -> None:
    """Raise RenderFailure, naming the recipient, if ``message`` could not be sent as it is,
    or its report row could not be written."""
    recipient = message.recipient
    where = f"{recipient.where} ({recipient.address})"
    if not message.to:
        raise RenderFailure(f"{where}: to renders empty; every message needs a To address "
                            "(check the to: template and this recipient's data)")
    if not message.envelope_recipients:
        raise RenderFailure(f"{where}: the message has no recipient address at all")
    parts: tuple[Attachment | InlineImage, ...] = (*message.attachments, *message.inline_images)
    texts = [recipient.address, *(text for part in parts
                                  for text in (part.filename, part.content_type))]
    for text in texts:
        if not _is_unicode(text):
            raise RenderFailure(f"{where}: {text!r} is not valid Unicode text; it cannot be "
                                "written into the message or the report")
    try:
        for body in (message.text, message.html):
            if body is not None and not body.isascii():
                body.encode("utf-8")  # all that encoding a body can fail on
        compose(dataclasses.replace(  # the headers and the MIME structure, without the bulk
            message, attachments=(), inline_images=(),
            text=None if message.text is None else "",
            html=None if message.html is None else ""), _NO_ATTACHMENTS, date="")
    except ValueError as err:  # UnicodeEncodeError: a lone surrogate from JSON's "\ud800"
        raise RenderFailure(f"{where}: the message cannot be written as email: "
                            f"{_reason(err)}") from None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _reason(err: ValueError) -> str:
    return unencodable(err) if isinstance(err, UnicodeEncodeError) else str(err)
