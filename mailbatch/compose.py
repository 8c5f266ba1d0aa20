"""Composition: a rendered message to the exact RFC 5322 bytes that go over the wire.

Headers and bodies come from the standard ``email`` package; attachment parts come
pre-encoded from the batch's AttachmentCache and are spliced in, so a file shared by
every message is base64-encoded once per batch, not once per message.
"""

from __future__ import annotations

import secrets
from email.message import EmailMessage, MIMEPart
from email.policy import SMTP as _SMTP
from email.utils import format_datetime

from mailbatch.attachments import AttachmentCache
from mailbatch.render import Rendered

__all__ = ["compose"]

# 7bit: non-ASCII bodies become quoted-printable or base64, so no server needs 8BITMIME.
SMTP = _SMTP.clone(cte_type="7bit")


def compose(message: Rendered, cache: AttachmentCache, date: str | None = None) -> bytes:
    """The complete message with CRLF line ends; Bcc addresses are never written into it."""
    top = EmailMessage(policy=SMTP)
    top["From"] = message.sender
    top["To"] = message.to
    if message.cc:
        top["Cc"] = ", ".join(message.cc)
    if message.reply_to:
        top["Reply-To"] = message.reply_to
    top["Subject"] = message.subject
    top["Date"] = date or format_datetime_now()
    top["Message-ID"] = message.message_id
    for name, value in message.headers:
        top[name] = value
    body = top if not message.attachments else MIMEPart(policy=SMTP)
    if message.text is not None:
        body.set_content(message.text)
        if message.html is not None:
            body.add_alternative(message.html, subtype="html")
    else:
        body.set_content(message.html or "", subtype="html")
    if not message.attachments:
        return top.as_bytes()
    body_bytes = body.as_bytes()
    boundary = _boundary(body_bytes)
    top["MIME-Version"] = "1.0"
    top["Content-Type"] = "multipart/mixed"
    top.set_param("boundary", boundary)
    delimiter = b"\r\n--" + boundary.encode("ascii") + b"\r\n"
    head = b"".join(SMTP.fold_binary(name, value) for name, value in top.items())
    chunks = [head, b"\r\n--", boundary.encode("ascii"), b"\r\n", body_bytes]
    for attachment in message.attachments:
        chunks += [delimiter, cache.part(attachment)]
    chunks.append(b"\r\n--" + boundary.encode("ascii") + b"--\r\n")
    return b"".join(chunks)


def _boundary(body: bytes) -> str:
    """A random boundary that does not occur in the body (base64 parts cannot contain it)."""
    while True:
        boundary = f"=_mailbatch_{secrets.token_hex(16)}"
        if boundary.encode("ascii") not in body:
            return boundary


def format_datetime_now() -> str:
    import datetime as dt

    return format_datetime(dt.datetime.now().astimezone())
