"""Tests for the benchmark's own instruments: run with ``pytest benchmarks/``.

The sink and the peak-RSS wrapper decide whether a result is valid, so they are tested
against a real TLS socket and a real child process, not mocks.
"""

from __future__ import annotations

import base64
import json
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Sink, make_certs, run_measured
from sink import MODES, PASSWORD, USER

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(params=MODES)
def sink(certs: tuple[Path, Path], tmp_path: Path, request: pytest.FixtureRequest,
         ) -> Iterator[Sink]:
    running = Sink(certs[1], tmp_path / "sink.log", request.param)
    try:
        yield running
    finally:
        running.close()


class Raw:
    """A bare TLS client that sends exactly the bytes a test gives it."""

    def __init__(self, port: int, ca: Path) -> None:
        ctx = ssl.create_default_context(cafile=str(ca))
        self.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                    server_hostname="127.0.0.1")
        self.file = self.sock.makefile("rb")
        assert self.reply().startswith(b"220")

    def reply(self) -> bytes:
        """Read one (possibly multi-line) reply; return its last line."""
        while True:
            line = self.file.readline()
            if line[3:4] != b"-":
                return line

    def send(self, data: bytes, chunk: int = 0) -> None:
        step = chunk or len(data)
        for i in range(0, len(data), step):
            self.sock.sendall(data[i:i + step])

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _plain() -> bytes:
    return base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())


def test_smtplib_login_plain_and_login_and_send_are_counted(sink: Sink,
                                                            certs: tuple[Path, Path]) -> None:
    ctx = ssl.create_default_context(cafile=str(certs[0]))
    with smtplib.SMTP_SSL("127.0.0.1", sink.port, context=ctx, timeout=10) as smtp:
        smtp.login(USER, PASSWORD)
        smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\n.dot\r\n..\r\n")
    with smtplib.SMTP_SSL("127.0.0.1", sink.port, context=ctx, timeout=10) as smtp:
        smtp.ehlo()
        smtp.user, smtp.password = USER, PASSWORD
        assert smtp.auth("LOGIN", smtp.auth_login)[0] == 235
        smtp.sendmail("a@example.com", ["b@example.com", "c@example.com"], b"\r\n")
    stats = sink.stats()
    assert (stats["messages"], stats["recipients"], stats["logins"]) == (2, 3, 2)
    assert stats["errors"] == 0


def test_wrong_password_is_refused_and_mail_needs_login(sink: Sink,
                                                        certs: tuple[Path, Path]) -> None:
    ctx = ssl.create_default_context(cafile=str(certs[0]))
    with smtplib.SMTP_SSL("127.0.0.1", sink.port, context=ctx, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login(USER, "wrong")
        with pytest.raises(smtplib.SMTPSenderRefused):
            smtp.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
    assert sink.stats()["messages"] == 0


BODIES = (b"line\r\n..stuffed\r\n", b"", b"x" * 70_000 + b"\r\n",
          b"a.b " * 3000 + b"\r\n" + b"QUJD\r\n" * 50_000)  # many dots, then base64-like


@pytest.mark.parametrize("chunk", [1, 3, 7, 0])
def test_data_terminator_is_found_however_the_bytes_are_split(
        sink: Sink, certs: tuple[Path, Path], chunk: int) -> None:
    raw = Raw(sink.port, certs[0])
    raw.send(b"EHLO me\r\nAUTH PLAIN " + _plain() + b"\r\n", chunk)
    assert raw.reply().startswith(b"250")
    assert raw.reply().startswith(b"235")
    for body in BODIES:
        raw.send(b"MAIL FROM:<a@example.com>\r\n", chunk)
        assert raw.reply().startswith(b"250")
        raw.send(b"RCPT TO:<b@example.com>\r\n", chunk)
        assert raw.reply().startswith(b"250")
        raw.send(b"DATA\r\n", chunk)
        assert raw.reply().startswith(b"354")
        raw.send(body + b".\r\n", chunk if len(body) < 1000 else 4096)
        assert raw.reply().startswith(b"250")
    raw.send(b"NOOP\r\nRSET\r\nQUIT\r\n", chunk)  # pipelined: three replies
    assert [raw.reply()[:3] for _ in range(3)] == [b"250", b"250", b"221"]
    raw.close()
    stats = sink.stats()
    assert stats["messages"] == len(BODIES)
    assert stats["bytes"] == sum(len(body) for body in BODIES)


def test_pipelined_envelopes_are_answered_in_order_and_each_message_counted(
        sink: Sink, certs: tuple[Path, Path]) -> None:
    raw = Raw(sink.port, certs[0])
    raw.send(b"EHLO me\r\n")
    ehlo = []
    while not ehlo or ehlo[-1][3:4] != b" ":
        ehlo.append(raw.file.readline())
    assert b"250-PIPELINING\r\n" in ehlo
    raw.send(b"AUTH PLAIN " + _plain() + b"\r\n")
    assert raw.reply().startswith(b"235")
    envelope = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
    raw.send(envelope)
    assert [raw.reply()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
    raw.send(b"first\r\n.\r\n" + envelope)  # RFC 2920: content may start a group
    assert [raw.reply()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
    raw.send(b"second\r\n.\r\nQUIT\r\n")
    assert [raw.reply()[:3] for _ in range(2)] == [b"250", b"221"]
    raw.close()
    stats = sink.stats()
    assert (stats["messages"], stats["recipients"], stats["errors"]) == (2, 2, 0)


def test_reset_zeroes_the_counters(sink: Sink, certs: tuple[Path, Path]) -> None:
    ctx = ssl.create_default_context(cafile=str(certs[0]))
    with smtplib.SMTP_SSL("127.0.0.1", sink.port, context=ctx, timeout=10) as smtp:
        smtp.login(USER, PASSWORD)
        smtp.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
    assert sink.stats()["messages"] == 1
    sink.reset()
    assert sink.stats() == dict.fromkeys(sink.stats(), 0)


def test_peak_rss_is_the_childs_own_not_the_harness_memory(tmp_path: Path) -> None:
    ballast = bytearray(300 * 1024 * 1024)  # the harness holds 300 MiB while it spawns
    ballast[::4096] = b"\1" * len(ballast[::4096])
    done = run_measured(["json.tool", "--help"], cwd=tmp_path, env={}, timeout=30,
                        peak_rss=True)
    assert done.returncode == 0
    assert done.peak_rss_kib is not None
    assert done.peak_rss_kib < 100 * 1024
    del ballast


def test_quick_run_writes_results(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(HERE / "run.py"), "--quick", "--only", "B",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    wire = next(r for r in rows if r["workload"] == "B" and r["contender"] == "wire limit")
    assert wire["valid_runs"] == wire["runs"] == 1
    assert (tmp_path / "results.md").read_text().startswith("# mailbatch benchmark")


def _two_writes_per_message(sink: Sink, certs: tuple[Path, Path], n: int, split: bool) -> float:
    """Seconds for n messages whose "." and next envelope go out as two writes (or one)."""
    raw = Raw(sink.port, certs[0])
    raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw.send(b"EHLO me\r\nAUTH PLAIN " + _plain() + b"\r\n")
    assert raw.reply().startswith(b"250") and raw.reply().startswith(b"235")
    envelope = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
    body = b"line of a message\r\n" * 2000
    started = time.perf_counter()
    raw.send(envelope)
    for i in range(n):
        assert [raw.reply()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        following = envelope if i < n - 1 else b""
        if split:
            raw.send(body + b".\r\n")
            if following:
                raw.send(following)
        else:
            raw.send(body)
            raw.send(b".\r\n" + following)
        assert raw.reply().startswith(b"250")
    elapsed = time.perf_counter() - started
    raw.close()
    return elapsed


def test_the_mta_like_sink_makes_a_write_trailing_the_dot_wait_for_the_delayed_ack(
        certs: tuple[Path, Path], tmp_path: Path) -> None:
    # Nagle on at the server: its second small write (the envelope's replies) waits until the
    # client acknowledges the first (the 250), and the client, waiting, delays its ACK ~40 ms.
    times = {}
    for mode in MODES:
        running = Sink(certs[1], tmp_path / f"{mode}.log", mode)
        try:
            times[mode] = (_two_writes_per_message(running, certs, 10, split=True),
                           _two_writes_per_message(running, certs, 10, split=False))
            assert running.stats()["messages"] == 20
        finally:
            running.close()
    assert times["mta"][0] > 10 * 0.02  # 40 ms a message on Linux; well above any noise
    assert times["mta"][0] > 3 * times["mta"][1]
    assert times["fast"][0] < 10 * 0.02  # the first sink hid it
