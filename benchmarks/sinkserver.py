"""The benchmark's SMTP sink as its own process: ``python benchmarks/sinkserver.py --cert C
--key K [--mode mta|fast]``.

It prints one JSON line ``{"port": N}`` on stdout once listening, then answers control
commands read from stdin, one per line: ``stats`` (print counters as JSON), ``reset`` (zero
them, print them), ``quit``. It exits when stdin closes, so it cannot outlive the harness.
The two modes are described in sink.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
from dataclasses import asdict

from sink import MODES, Counters, SmtpSink
from sink_mta import MtaLikeSink


async def _control(counters: Counters) -> None:
    """Answer stats/reset on stdin; return (ending the sink) when stdin closes or says quit."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = line.strip().decode()
        if command == "quit":
            return
        if command == "reset":
            for field in asdict(counters):
                setattr(counters, field, 0)
        print(json.dumps(asdict(counters)), flush=True)


async def serve(cert: str, key: str, host: str, port: int, mode: str = "mta") -> None:
    """Listen with implicit TLS until the control channel ends."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    counters = Counters()
    loop = asyncio.get_running_loop()
    if mode == "mta":  # TLS in the protocol, record by record
        server = await loop.create_server(
            lambda: MtaLikeSink(counters, context), host, port, backlog=512,
            reuse_address=True)
    else:
        server = await loop.create_server(
            lambda: SmtpSink(counters), host, port, ssl=context, backlog=512,
            reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": bound}), flush=True)
    async with server:
        await _control(counters)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The benchmark's SMTP sink, its own process.")
    parser.add_argument("--cert", required=True, help="PEM certificate chain for the server")
    parser.add_argument("--key", required=True, help="PEM private key for the server")
    parser.add_argument("--host", default="127.0.0.1", help="loopback only (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--mode", choices=MODES, default="mta",
                        help="mta: Nagle on and replies written as Postfix writes them "
                             "(default); fast: TCP_NODELAY and asyncio's TLS")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.cert, args.key, args.host, args.port, args.mode))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
