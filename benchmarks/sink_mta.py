"""The sink's default mode: the same SMTP session as ``SmtpSink``, on the wire like Postfix.

Postfix (as Exim and Sendmail) leaves Nagle's algorithm on, reads its input through a 4 KiB
buffer (at most 4 KiB of one TLS record at a time) and writes the replies it has gathered
whenever it refills that buffer. See sink.py for what that shows.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

from sink import READ_SIZE, Counters, SmtpSink

__all__ = ["MTA_READ", "MtaLikeSink"]

MTA_READ = 4096  # Postfix's stream buffer: it reads (and before that, flushes) 4 KiB at a time


class MtaLikeSink(SmtpSink):
    """The same session, on the wire like Postfix: Nagle on, one TLS record read at a time,
    4 KiB read at a time, pending replies written before each read (see the module)."""

    def __init__(self, counters: Counters, context: ssl.SSLContext) -> None:
        super().__init__(counters)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._raw = bytearray(READ_SIZE)
        self._raw_view = memoryview(self._raw)
        self._ready = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # asyncio sets TCP_NODELAY on every socket; MTAs leave Nagle on
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        self.counters.sessions += 1

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._raw_view  # TLS bytes off the socket; decrypted below, record by record

    def buffer_updated(self, nbytes: int) -> None:
        self._incoming.write(self._raw_view[:nbytes])
        if not self._ready:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                self._write_out()
                return
            except ssl.SSLError:
                self._abort()
                return
            self._ready = True
            self.reply(b"220 sink.localhost ESMTP ready\r\n")
            self._flush()
        while self.transport is not None and not self.transport.is_closing():
            try:  # at most 4 KiB of one record, as Postfix reads (VSTREAM_BUFSIZE)
                size = self._tls.read(MTA_READ, self.view)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLError):
                self._abort()
                return
            if not size:
                self._abort()
                return
            if self.in_data and not self.buf:
                self._scan_data(self.chunk, size)
            else:
                self.buf += self.view[:size]
            self._drain()
            self._flush()  # the input read so far is used up: write what is pending
        self._write_out()

    def _flush(self) -> None:
        if self.pending and self.transport is not None and not self.transport.is_closing():
            self._tls.write(b"".join(self.pending))
        self.pending.clear()
        self._write_out()

    def _write_out(self) -> None:
        data = self._outgoing.read()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.close()
