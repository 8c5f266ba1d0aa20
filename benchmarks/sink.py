"""A minimal, fast implicit-TLS SMTP sink that counts what it accepts.

Why not aiosmtpd: it tops out near 180 messages/s, slower than the clients it would measure.
This sink reads DATA in bulk (it searches the buffer for the terminator, it never parses
lines) and keeps no message bodies, so the client is the bottleneck.

Two modes. ``mta`` (the default) behaves on TCP like the common MTAs (Postfix, Exim,
Sendmail): Nagle's algorithm stays on for accepted sockets (asyncio turns it off, no MTA
does), and it reads as Postfix does, at most 4 KiB of one TLS record at a time, writing the
replies gathered so far before each read (Postfix's double-buffered stream flushes its
output whenever it refills its 4 KiB input buffer). A client whose pipelined commands
arrive in two reads (a small write trailing the ".", or a group across a 4 KiB boundary) then
waits for its own delayed ACK, some 40 ms, as it would against Postfix. ``fast`` is the first
sink: asyncio's TLS, TCP_NODELAY, replies written once per read of the socket.

It runs as its own process, ``python benchmarks/sinkserver.py`` (see there); ``mta`` mode's
protocol is in sink_mta.py.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from dataclasses import dataclass

__all__ = ["MODES", "PASSWORD", "USER", "Counters", "SmtpSink"]

USER = "bench"
PASSWORD = "bench-password-not-secret"
MAX_SIZE = 200 * 1024 * 1024
TERMINATOR = b"\r\n.\r\n"
MAX_LINE = 64 * 1024
READ_SIZE = 1024 * 1024  # large reads: fewer wake-ups per megabyte of DATA
SMALL_CHUNK = 16 * 1024
MODES = ("mta", "fast")


@dataclass
class Counters:
    """What the harness checks after every run: accepted messages must equal messages sent."""

    messages: int = 0
    bytes: int = 0
    recipients: int = 0
    sessions: int = 0
    logins: int = 0
    auth_failures: int = 0
    errors: int = 0


def _find_terminator(chunk: bytes | bytearray, size: int) -> int:
    """``chunk.find(TERMINATOR, 0, size)``, five times quicker on base64 (which has no dots):
    find each dot with a memchr and look around it. After as many dots as the plain search
    would cost, the plain search finishes the job. A small chunk (a short message, often
    text full of dots) goes straight to the plain search."""
    if size <= SMALL_CHUNK:
        return chunk.find(TERMINATOR, 0, size)
    start = 0
    for _ in range(64 + size // 2048):
        dot = chunk.find(b".", start, size)
        if dot < 0:
            return -1
        if dot >= 2 and chunk[dot - 2 : dot + 3] == TERMINATOR:
            return dot - 2
        start = dot + 1
    return chunk.find(TERMINATOR, max(0, start - 3), size)


def _auth_plain_ok(blob: bytes) -> bool:
    """Decode an AUTH PLAIN response: authzid NUL user NUL password."""
    try:
        parts = base64.b64decode(blob, validate=True).split(b"\0")
    except ValueError:
        return False
    return len(parts) == 3 and parts[1:] == [USER.encode(), PASSWORD.encode()]


def _b64(blob: bytes) -> bytes:
    """Decode a base64 AUTH LOGIN line, or return a value that matches nothing."""
    try:
        return base64.b64decode(blob, validate=True)
    except ValueError:
        return b"\0invalid"


class SmtpSink(asyncio.BufferedProtocol):
    """One SMTP session: a small command state machine plus a bulk DATA scanner."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.transport: asyncio.Transport | None = None
        self.chunk = bytearray(READ_SIZE)
        self.view = memoryview(self.chunk)
        self.buf = bytearray()  # command bytes not yet processed
        self.pending: list[bytes] = []  # replies not yet written
        self.in_data = False
        self.data_tail = b""  # last bytes of DATA seen, so a split terminator is still found
        self.data_bytes = 0  # DATA bytes received before the current chunk
        self.authed = False
        self.auth_step: str | None = None  # "plain", "login-user", "login-pass"
        self.login_user = b""
        self.rcpts = 0
        self.has_from = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.counters.sessions += 1
        transport.write(b"220 sink.localhost ESMTP ready\r\n")

    def reply(self, line: bytes) -> None:
        """Replies wait until every command received so far is processed, then go out in one
        write (RFC 2920, 3.2: send pending responses when the input buffer is emptied)."""
        self.pending.append(line)

    def _flush(self) -> None:
        if self.pending and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.pending))
        self.pending.clear()

    def get_buffer(self, sizehint: int) -> memoryview:
        """asyncio's SSL layer decrypts straight into this buffer: no copy per chunk."""
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        if self.in_data and not self.buf:
            self._scan_data(self.chunk, nbytes)  # the common case: scan in place
        else:
            self.buf += self.view[:nbytes]
        self._drain()
        self._flush()

    def _drain(self) -> None:
        """Process whole command lines; hand any remainder to the DATA scanner."""
        while self.buf and self.transport is not None and not self.transport.is_closing():
            if self.in_data:
                chunk = bytes(self.buf)
                self.buf.clear()
                self._scan_data(chunk, len(chunk))
                continue
            end = self.buf.find(b"\n")
            if end < 0:
                if len(self.buf) > MAX_LINE:
                    self.reply(b"500 line too long\r\n")
                    self._flush()
                    self.transport.close()
                return
            line = bytes(self.buf[:end]).rstrip(b"\r")
            del self.buf[: end + 1]
            self._command(line)

    def _scan_data(self, chunk: bytes | bytearray, size: int) -> None:
        """Look for CRLF.CRLF in chunk[:size], also across the chunk boundary; drop the body."""
        tail = self.data_tail
        pos = (tail + bytes(chunk[: min(4, size)])).find(TERMINATOR)  # split terminator
        if pos < 0:
            found = _find_terminator(chunk, size)
            pos = found + len(tail) if found >= 0 else -1
        if pos < 0:
            self.data_bytes += size
            self.data_tail = bytes(chunk[size - 4 : size]) if size >= 4 else (
                tail + bytes(chunk[:size]))[-4:]
            return
        end = pos + len(TERMINATOR) - len(tail)  # index in chunk just past the terminator
        self.in_data = False
        self.data_tail = b""
        self.counters.messages += 1
        self.counters.recipients += self.rcpts
        self.counters.bytes += self.data_bytes + end - 3  # the body keeps its final CRLF
        self._reset_envelope()
        self.reply(b"250 2.0.0 queued\r\n")
        if end < size:
            self.buf[:0] = chunk[end:size]

    def _reset_envelope(self) -> None:
        self.has_from = False
        self.rcpts = 0
        self.data_bytes = 0

    def _command(self, line: bytes) -> None:
        if self.auth_step is not None:
            self._auth_continue(line)
            return
        verb, _, arg = line.partition(b" ")
        verb = verb.upper()
        if verb == b"EHLO":
            self._reset_envelope()
            self.reply(
                b"250-sink.localhost\r\n250-SIZE %d\r\n250-8BITMIME\r\n250-PIPELINING\r\n"
                b"250-AUTH PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES\r\n" % MAX_SIZE
            )
        elif verb == b"HELO":
            self._reset_envelope()
            self.reply(b"250 sink.localhost\r\n")
        elif verb == b"AUTH":
            self._auth_start(arg)
        elif verb == b"MAIL":
            if not self.authed:
                self._error(b"530 5.7.0 authentication required\r\n")
            else:
                self._reset_envelope()
                self.has_from = True
                self.reply(b"250 2.1.0 ok\r\n")
        elif verb == b"RCPT":
            if not self.has_from:
                self._error(b"503 5.5.1 need MAIL first\r\n")
            else:
                self.rcpts += 1
                self.reply(b"250 2.1.5 ok\r\n")
        elif verb == b"DATA":
            if not self.rcpts:
                self._error(b"503 5.5.1 need RCPT first\r\n")
            else:
                self.in_data = True
                self.data_tail = b"\r\n"  # the CRLF ending "DATA", so "." alone ends it too
                self.data_bytes = 0
                self.reply(b"354 end with <CRLF>.<CRLF>\r\n")
        elif verb == b"RSET":
            self._reset_envelope()
            self.reply(b"250 2.0.0 ok\r\n")
        elif verb == b"NOOP":
            self.reply(b"250 2.0.0 ok\r\n")
        elif verb == b"QUIT":
            self.reply(b"221 2.0.0 bye\r\n")
            self._flush()
            assert self.transport is not None
            self.transport.close()
        else:
            self._error(b"502 5.5.2 command not implemented\r\n")

    def _error(self, line: bytes) -> None:
        self.counters.errors += 1
        self.reply(line)

    def _auth_start(self, arg: bytes) -> None:
        mech, _, initial = arg.partition(b" ")
        mech = mech.upper()
        if mech == b"PLAIN" and initial:
            self._auth_done(_auth_plain_ok(initial.strip()))
        elif mech == b"PLAIN":
            self.auth_step = "plain"
            self.reply(b"334 \r\n")
        elif mech == b"LOGIN" and initial:
            self.login_user = _b64(initial.strip())
            self.auth_step = "login-pass"
            self.reply(b"334 UGFzc3dvcmQ6\r\n")
        elif mech == b"LOGIN":
            self.auth_step = "login-user"
            self.reply(b"334 VXNlcm5hbWU6\r\n")
        else:
            self._error(b"504 5.5.4 unrecognized authentication type\r\n")

    def _auth_continue(self, line: bytes) -> None:
        step, self.auth_step = self.auth_step, None
        if line == b"*":
            self._error(b"501 5.7.0 authentication cancelled\r\n")
        elif step == "plain":
            self._auth_done(_auth_plain_ok(line))
        elif step == "login-user":
            self.login_user = _b64(line)
            self.auth_step = "login-pass"
            self.reply(b"334 UGFzc3dvcmQ6\r\n")
        else:
            ok = self.login_user == USER.encode() and _b64(line) == PASSWORD.encode()
            self._auth_done(ok)

    def _auth_done(self, ok: bool) -> None:
        if ok:
            self.authed = True
            self.counters.logins += 1
            self.reply(b"235 2.7.0 authentication successful\r\n")
        else:
            self.counters.auth_failures += 1
            self.reply(b"535 5.7.8 authentication credentials invalid\r\n")
