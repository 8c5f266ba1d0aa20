"""The in-process contenders: the loops users write with smtplib, and the wire limit.

They all render the same templates with the same data and build the same EmailMessage
(``build_message``), so only how the mail is sent differs between them.
"""

from __future__ import annotations

import csv
import json
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path
from typing import TypeVar

import jinja2
from sink import PASSWORD, USER
from workload import FROM, FROM_ADDR, SUBJECT, Workdir

__all__ = [
    "Login",
    "Outcome",
    "Renderer",
    "addresses",
    "build_message",
    "dot_stuffed",
    "naive_loop",
    "per_message_loop",
    "prebuild",
    "wire_limit",
    "wire_limit_pipelined",
]


@dataclass(frozen=True)
class Login:
    """Where the wire-limit loops connect and who they log in as (default: the sink)."""

    host: str = "127.0.0.1"
    user: str = USER
    password: str = PASSWORD


SINK = Login()


@dataclass(frozen=True)
class Outcome:
    """What one timed run did: messages the client believes were accepted, and wall time."""

    sent: int
    seconds: float


class Renderer:
    """Jinja as a user would set it up: one Environment, templates loaded once."""

    def __init__(self, work: Workdir) -> None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(work.root),
            autoescape=lambda name: bool(name and name.endswith(".html.j2")),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        self.subject = env.from_string(SUBJECT)
        self.text = env.get_template("templates/report.txt.j2")
        self.html = env.get_template("templates/report.html.j2")
        self.data = {"sales": json.loads(work.sales.read_text())}
        self.attachment = work.attachment.read_bytes() if work.attachment else None
        self.attachment_name = work.attachment.name if work.attachment else ""

    def message(self, recipient: dict[str, str]) -> EmailMessage:
        context = {**recipient, "data": self.data}
        return build_message(
            recipient, self.subject.render(context), self.text.render(context),
            self.html.render(context), self.attachment, self.attachment_name,
        )


def build_message(
    recipient: dict[str, str], subject: str, text: str, html: str,
    attachment: bytes | None, attachment_name: str,
) -> EmailMessage:
    """The message every contender sends: text + HTML alternative, optional PDF."""
    msg = EmailMessage()
    msg["From"] = FROM
    msg["To"] = formataddr((recipient["name"], recipient["email"]))
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="example.com")  # no domain means a DNS lookup each
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf",
                           filename=attachment_name)
    return msg


def recipients(work: Workdir, limit: int | None = None) -> list[dict[str, str]]:
    with work.recipients.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows[:limit] if limit is not None else rows


def client_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


T = TypeVar("T")


def _bounded(items: Sequence[T], deadline: float) -> Iterator[T]:
    """Yield items until the deadline; a run that overruns is cut short, never hangs."""
    for item in items:
        if time.monotonic() > deadline:
            return
        yield item


def naive_loop(work: Workdir, port: int, ctx: ssl.SSLContext, limit: int | None,
               budget: float) -> Outcome:
    """One SMTP_SSL session; build and send_message each message; default socket options."""
    rows = recipients(work, limit)
    start = time.perf_counter()
    renderer = Renderer(work)
    sent = 0
    with smtplib_ssl(port, ctx) as smtp:
        smtp.login(USER, PASSWORD)
        for row in _bounded(rows, time.monotonic() + budget):
            smtp.send_message(renderer.message(row))
            sent += 1
    return Outcome(sent, time.perf_counter() - start)


def per_message_loop(work: Workdir, port: int, ctx: ssl.SSLContext, limit: int | None,
                     budget: float) -> Outcome:
    """Like the naive loop, but connect, TLS-handshake and log in again for every message."""
    rows = recipients(work, limit)
    start = time.perf_counter()
    renderer = Renderer(work)
    sent = 0
    for row in _bounded(rows, time.monotonic() + budget):
        assert isinstance(row, dict)
        msg = renderer.message(row)
        with smtplib_ssl(port, ctx) as smtp:
            smtp.login(USER, PASSWORD)
            smtp.send_message(msg)
        sent += 1
    return Outcome(sent, time.perf_counter() - start)


def prebuild(work: Workdir, limit: int | None = None) -> list[tuple[str, bytes]]:
    """Render and serialise messages ahead of time, outside any timed region.

    ``limit`` caps how many: the email package needs milliseconds per message here, so
    building all 20,000 of workload B would take longer than sending them.
    """
    renderer = Renderer(work)
    return [(row["email"], renderer.message(row).as_bytes(policy=SMTP))
            for row in recipients(work, limit)]


def addresses(work: Workdir) -> list[str]:
    return [row["email"] for row in recipients(work)]


def wire_limit(messages: Sequence[tuple[str, bytes]], port: int, ctx: ssl.SSLContext,
               budget: float, nodelay: bool = True, login: Login = SINK) -> Outcome:
    """Ready-made bytes over one session in a tight loop: the most an smtplib client can do."""
    start = time.perf_counter()
    sent = 0
    with smtplib_ssl(port, ctx, login.host) as smtp:
        if nodelay:
            assert smtp.sock is not None
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        smtp.login(login.user, login.password)
        for item in _bounded(messages, time.monotonic() + budget):
            to, data = item
            smtp.sendmail(FROM_ADDR, [to], data)
            sent += 1
    return Outcome(sent, time.perf_counter() - start)


def dot_stuffed(data: bytes) -> bytes:
    """DATA as it goes on the wire, without the final ".": done before timing starts."""
    stuffed = re.sub(rb"(?m)^\.", b"..", data)
    return stuffed if stuffed.endswith(b"\r\n") else stuffed + b"\r\n"


def wire_limit_pipelined(messages: Sequence[tuple[str, bytes]], port: int,
                         ctx: ssl.SSLContext, budget: float, login: Login = SINK) -> Outcome:
    """The wire limit with PIPELINING (RFC 2920), which smtplib cannot do: MAIL, RCPT and
    DATA in one write; then the dot-stuffed message, its "." and the next message's MAIL,
    RCPT and DATA in another (message content may lead a group, RFC 2920 3.1): one round trip
    a message, every reply checked. The most any client can do against the sink, one message
    at a time."""
    start = time.perf_counter()
    sent = 0

    def envelope(to: str) -> bytes:
        return f"MAIL FROM:<{FROM_ADDR}>\r\nRCPT TO:<{to}>\r\nDATA\r\n".encode()

    with smtplib_ssl(port, ctx, login.host) as smtp:
        assert smtp.sock is not None
        smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        smtp.login(login.user, login.password)
        if not smtp.has_extn("pipelining"):
            raise RuntimeError("the sink does not offer PIPELINING")
        bounded = _bounded(messages, time.monotonic() + budget)
        current = next(bounded, None)
        if current is not None:
            smtp.send(envelope(current[0]))
        while current is not None:
            to, data = current
            codes = [smtp.getreply()[0] for _ in range(3)]
            if codes != [250, 250, 354]:
                raise RuntimeError(f"envelope for {to} answered {codes}")
            current = next(bounded, None)
            smtp.send(data + b".\r\n" + (envelope(current[0]) if current else b""))
            code, reply = smtp.getreply()
            if code != 250:
                raise RuntimeError(f"message to {to} answered {code} {reply!r}")
            sent += 1
    return Outcome(sent, time.perf_counter() - start)


def smtplib_ssl(port: int, ctx: ssl.SSLContext, host: str = "127.0.0.1") -> smtplib.SMTP_SSL:
    """The sink on loopback (or the MTA of the environment), with a timeout so a stuck
    server fails the run instead of hanging it."""
    return smtplib.SMTP_SSL(host, port, context=ctx, timeout=30)
