"""The bytes of a session that smtplib does not write for us: pipelined groups, the end of DATA
with the next envelope, dot-stuffing, and a look at whether the server hung up."""

from __future__ import annotations

import contextlib
import select
import smtplib
import ssl

__all__ = ["GROUP_MAX", "dot_stuff", "group", "hung_up", "write_end"]

# A pipelined group (MAIL, the RCPTs, DATA; after a message, its "." too) stays within this
# many bytes: it arrives in one TLS record, which a server reading 4 KiB at a time (Postfix)
# reads whole. Split across two reads, the server writes the first replies before reading
# the rest, and with Nagle on, the later replies wait for the client's delayed ACK.
GROUP_MAX = 4000


def group(commands: list[str]) -> str | None:
    """The commands as one pipelined write, or None if that would be longer than GROUP_MAX."""
    text = "".join(f"{command}\r\n" for command in commands)
    return text if len(text) <= GROUP_MAX else None


def write_end(smtp: smtplib.SMTP, tail: bytes) -> OSError | None:
    """Write the end of DATA and ``tail`` (the next envelope) in one go; the error if that
    fails. Not smtp.send(): on a failed write it closes the connection, and the server's
    reply (perhaps a 250 before a hang-up) may still be there to read: it decides whether
    the message was delivered."""
    if smtp.debuglevel:
        smtp._print_debug("send:", "[the end of DATA]")  # type: ignore[attr-defined]
        if tail:
            smtp._print_debug("send:", repr(tail.decode(smtp.command_encoding)))  # type: ignore[attr-defined]
    try:
        assert smtp.sock is not None
        smtp.sock.sendall(b".\r\n" + tail)
    except OSError as err:
        return err
    return None


def hung_up(smtp: smtplib.SMTP) -> bool:
    """Whether the server hung up (or spoke out of turn) since its last reply: the client has
    the word, so nothing should have arrived. Never waits. Something readable is looked at
    without blocking, since TLS may deliver records that carry no data (a TLS 1.3 session
    ticket or key update): those are no reason to drop the session."""
    sock = smtp.sock
    if sock is None:
        return True
    buffered = isinstance(sock, ssl.SSLSocket) and sock.pending()
    if not buffered and not select.select([sock], [], [], 0)[0]:
        return False
    timeout = sock.gettimeout()
    try:
        sock.setblocking(False)
        sock.recv(1)  # data out of turn (the session is spoiled) or b"": a hang-up
        return True
    except (ssl.SSLWantReadError, BlockingIOError):
        return False  # a TLS record without data, handled by the read
    except OSError:
        return True
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(timeout)


def dot_stuff(data: bytes) -> bytes:
    """Double every line-leading dot (RFC 5321 4.5.2); ``data`` already ends in CRLF."""
    stuffed = data
    if _line_leading_dot(data):
        stuffed = data.replace(b"\r\n.", b"\r\n..")
        if stuffed.startswith(b"."):
            stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed


def _line_leading_dot(data: bytes) -> bool:
    """Whether a line may start with a dot. Most of a large message is base64, which has no
    dots: finding each dot and looking at the byte before it (a memchr) is ten times quicker
    than searching for CRLF-dot. After as many dots as that search would cost, say maybe.
    A small message (often text full of dots) is searched outright."""
    if len(data) <= 16 * 1024:
        return data.startswith(b".") or b"\n." in data
    start = 0
    for _ in range(64 + len(data) // 2048):
        dot = data.find(b".", start)
        if dot < 0:
            return False
        if dot == 0 or data[dot - 1] == 0x0A:
            return True
        start = dot + 1
    return True
