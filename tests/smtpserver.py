"""A real SMTP server for the tests: aiosmtpd on 127.0.0.1, trustme TLS, deterministic faults."""

from __future__ import annotations

import asyncio
import binascii
import collections
import contextlib
import dataclasses
import email
import email.message
import email.policy
import logging
import re
import socket
import ssl
import threading
from base64 import b64decode
from typing import Any, Literal, Self

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = [
    "DEFAULT_DATA_SIZE_LIMIT",
    "HOST",
    "OAUTH2_TOKEN",
    "PASSWORD",
    "USERNAME",
    "Faults",
    "Received",
    "Security",
    "SmtpTestServer",
]

HOST = "127.0.0.1"
USERNAME = "mailer"
PASSWORD = "s3cret-pass"
OAUTH2_TOKEN = "ya29.test-token"
DEFAULT_DATA_SIZE_LIMIT = 33_554_432

Security = Literal["tls", "starttls", "plain-no-starttls"]


def _not_login_data_deprecation(record: logging.LogRecord) -> bool:
    # aiosmtpd 1.4 itself sets Session.login_data on every successful AUTH, which logs this.
    return not record.getMessage().startswith("Session.login_data is deprecated")


# aiosmtpd logs every command at INFO and a deprecation WARNING per login: keep that chatter
# out of the caplog of mailbatch tests; its real warnings and errors still come through.
_aiosmtpd_log = logging.getLogger("mail.log")
_aiosmtpd_log.setLevel(logging.WARNING)
_aiosmtpd_log.addFilter(_not_login_data_deprecation)


@dataclasses.dataclass(frozen=True)
class Received:
    """One message the server stored, exactly as the client sent it (no headers added)."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    connection: int

    @property
    def message(self) -> email.message.EmailMessage:
        """The data parsed, so tests can look at headers and parts instead of bytes."""
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


@dataclasses.dataclass(frozen=True)
class Faults:
    """Misbehaviour on cue; "every K-th" counts from start(), reset() or set_faults(), 1-based.

    MAIL and DATA faults count across connections: the n-th MAIL command (after the
    authentication check) and the n-th end of DATA the server has seen.
    """

    drop_after_every: int | None = None
    tempfail_every: int | None = None
    close_after_per_connection: int | None = None
    reject_pattern: str | None = None
    slow_data_reply: tuple[int, float] | None = None
    slow_mail_reply: tuple[int, float] | None = None
    fail_login_after: int | None = None
    defer_pattern: str | None = None  # RCPT of a matching address: 450, like greylisting
    tempfail_pattern: str | None = None  # end of DATA of a matching first recipient: 451
    data_reply: tuple[int, str] | None = None  # (every K, line): stored, then this "reply"
    # XOAUTH2: each token is accepted for this many logins, then refused (it "expired")
    token_logins: int | None = None
    token_refusal: str | None = None  # XOAUTH2: the reply to a refused token (default: 535)

    def __post_init__(self) -> None:
        for name in ("drop_after_every", "tempfail_every", "close_after_per_connection"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        for name in ("slow_data_reply", "slow_mail_reply"):
            value = getattr(self, name)
            if value is not None and (value[0] < 1 or value[1] < 0):
                raise ValueError(f"{name} must be (every >= 1, seconds >= 0), got {value}")
        if self.fail_login_after is not None and self.fail_login_after < 0:
            raise ValueError(f"fail_login_after must be >= 0, got {self.fail_login_after}")
        for pattern in (self.reject_pattern, self.defer_pattern, self.tempfail_pattern):
            if pattern is not None:
                re.compile(pattern)
        if self.data_reply is not None and self.data_reply[0] < 1:
            raise ValueError(f"data_reply must be (every >= 1, line), got {self.data_reply}")


def _hits(n: int, every: int | None) -> bool:
    """Whether a fault set to "every K-th" applies to the n-th event."""
    return every is not None and n % every == 0


def _delay(n: int, slow: tuple[int, float] | None) -> float:
    """Seconds a (K, seconds) slow-reply fault holds back the n-th reply; 0 if it does not."""
    return slow[1] if slow is not None and _hits(n, slow[0]) else 0.0


class _Connection(SMTP):
    """aiosmtpd's SMTP protocol for one TCP connection, numbered, able to hang up after a reply."""

    def __init__(self, handler: _Handler, *, connection: int, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.connection = connection
        self.delivered = 0
        self.hang_up_after_reply = False
        self._owner = handler.owner

    async def push(self, status: str | bytes) -> None:
        # Hooks can only return the reply; closing after it has been written happens here.
        await super().push(status)
        if self.hang_up_after_reply and self.transport is not None:
            self.hang_up_after_reply = False
            self.transport.abort()  # no QUIT, no TLS close_notify: a dropped connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # aiosmtpd answers pipelined commands one write each; with Nagle on (as the socket is
        # here), each answer after the first waits for the client's delayed ACK, ~40 ms. Real
        # MTAs gather the answers into one write instead (see benchmarks/sink_mta.py).
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._owner._live.discard(self)
        super().connection_lost(error)


class _Handler:
    """aiosmtpd hooks: check credentials, record messages, apply the configured faults."""

    def __init__(self, owner: SmtpTestServer) -> None:
        self.owner = owner

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Offer PIPELINING (RFC 2920) like the common servers; aiosmtpd reads commands from a
        buffer, so several arriving in one write are answered in order."""
        session.host_name = hostname  # what smtp_EHLO does itself when there is no hook
        if self.owner.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """The `authenticator` for the built-in PLAIN and LOGIN mechanisms."""
        valid = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == USERNAME.encode()
            and auth_data.password == PASSWORD.encode()
        )
        return self.owner._login_result(mechanism, valid, auth_data)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """Google's XOAUTH2, with or without an initial response (smtplib sends one)."""
        if len(args) > 1:
            try:
                blob = b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            answer = await server.challenge_auth("")
            if answer is MISSING:  # challenge_auth has already replied 501
                return AuthResult(success=False, handled=True)
            blob = answer
        fields = dict(part.split(b"=", 1) for part in blob.split(b"\x01") if b"=" in part)
        user, token = fields.get(b"user", b""), fields.get(b"auth", b"")
        owner = self.owner
        valid = user == USERNAME.encode() and owner._token_valid(token.removeprefix(b"Bearer "))
        refusal = owner.faults.token_refusal
        if not valid and refusal is not None:
            owner._login_result("XOAUTH2", False, None)  # counted as refused
            await server.push(refusal)
            return AuthResult(success=False, handled=True)
        return owner._login_result("XOAUTH2", valid, LoginPassword(user, token))

    async def handle_MAIL(
        self,
        server: _Connection,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        owner = self.owner
        faults = owner.faults
        if owner.auth_required and not session.authenticated:
            return "530 5.7.0 Authentication required"
        limit = faults.close_after_per_connection
        if limit is not None and server.delivered >= limit:
            server.hang_up_after_reply = True
            return "421 4.7.0 Too many messages, closing connection"
        if b"RCPT" in bytes(server._reader._buffer):  # the envelope came in one write
            owner._count("pipelined envelope")
        if delay := _delay(owner._count("mail"), faults.slow_mail_reply):
            await asyncio.sleep(delay)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: _Connection,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        faults = self.owner.faults
        if faults.reject_pattern is not None and re.search(faults.reject_pattern, address):
            return "550 5.1.1 User unknown"
        if faults.defer_pattern is not None and re.search(faults.defer_pattern, address):
            self.owner._count("deferred rcpt")
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: _Connection, session: Session, envelope: Envelope) -> str:
        owner = self.owner
        faults = owner.faults
        n = owner._count("data")
        if _hits(n, faults.tempfail_every) or (
                faults.tempfail_pattern is not None and envelope.rcpt_tos
                and re.search(faults.tempfail_pattern, envelope.rcpt_tos[0])):
            return "451 4.3.0 Try again later"
        assert envelope.mail_from is not None and envelope.original_content is not None
        owner._store(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                data=bytes(envelope.original_content),
                connection=server.connection,
            )
        )
        server.delivered += 1
        if delay := _delay(n, faults.slow_data_reply):
            await asyncio.sleep(delay)  # stored already: only the reply is late
        if b"MAIL" in bytes(server._reader._buffer):  # the client did not wait for this reply
            owner._count("envelope ahead")
        if _hits(n, faults.drop_after_every):
            server.hang_up_after_reply = True
        if faults.data_reply is not None and _hits(n, faults.data_reply[0]):
            return faults.data_reply[1]  # aiosmtpd writes whatever a hook returns
        return "250 OK"


class _Controller(Controller):
    """aiosmtpd's threaded Controller, serving our numbered connections on a pre-bound socket."""

    def __init__(self, owner: SmtpTestServer, sock: socket.socket, **kwargs: Any) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(owner._handler, hostname=host, port=port, **kwargs)
        self._owner = owner
        self._sock = sock

    def factory(self) -> SMTP:
        return self._owner._new_connection(self.SMTP_kwargs)

    def _create_server(self) -> Any:
        # Port 0 bound before the thread starts: no window in which another process takes it.
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class SmtpTestServer:
    """A local SMTP submission server that records what it accepts and fails on cue.

    `security`: "tls" (implicit TLS), "starttls" (STARTTLS offered and required before AUTH
    and MAIL) or "plain-no-starttls" (no TLS at all, AUTH still offered so a client can be
    shown to refuse it). `pipelining=False` stops offering PIPELINING. `oauth2_tokens`: the
    XOAUTH2 bearer tokens it accepts. Records and counters are safe to read from the test
    thread.
    """

    host = HOST

    def __init__(
        self,
        ca: trustme.CA | None,
        *,
        security: Security = "tls",
        auth_required: bool = True,
        data_size_limit: int = DEFAULT_DATA_SIZE_LIMIT,
        pipelining: bool = True,
        oauth2_tokens: tuple[str, ...] = (OAUTH2_TOKEN,),
        **faults: Any,
    ) -> None:
        if security not in ("tls", "starttls", "plain-no-starttls"):
            raise ValueError(f"unknown security {security!r}")
        if security != "plain-no-starttls" and ca is None:
            raise ValueError(f"security={security!r} needs a trustme.CA for its certificate")
        self.ca = ca
        self.security = security
        self.auth_required = auth_required
        self.data_size_limit = data_size_limit
        self.pipelining = pipelining
        self.oauth2_tokens = oauth2_tokens
        self._token_uses: collections.Counter[bytes] = collections.Counter()
        self.port = 0
        self._faults = Faults(**faults)
        self._handler = _Handler(self)
        self._controller: _Controller | None = None
        self._live: set[_Connection] = set()  # touched only on the server's event loop
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._messages: list[Received] = []
        self._connections = 0
        self._logins = 0
        self._failed_logins = 0
        self._login_mechanisms: list[str] = []
        self._counts: collections.Counter[str] = collections.Counter()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen on a free port of 127.0.0.1; returns self so `make()` can chain."""
        if self._controller is not None:
            raise RuntimeError("SmtpTestServer is already running")
        options: dict[str, Any] = {
            "server_hostname": "localhost",  # avoids socket.getfqdn(), which can stall on DNS
            "data_size_limit": self.data_size_limit,
            "authenticator": self._handler.authenticate,
        }
        if self.security == "tls":
            options["ssl_context"] = self._server_context()
            options["auth_require_tls"] = False  # aiosmtpd cannot see the socket is TLS already
        elif self.security == "starttls":
            options["tls_context"] = self._server_context()
            options["require_starttls"] = True
        else:
            options["auth_require_tls"] = False
        self._live.clear()
        sock = socket.create_server((HOST, 0))
        controller = _Controller(self, sock, **options)
        try:
            controller.start()
        except BaseException:
            controller.stop(no_assert=True)
            sock.close()
            raise
        self._controller = controller
        self.port = sock.getsockname()[1]
        self.reset()  # forget the probe connection Controller.start() makes
        return self

    def stop(self) -> None:
        """Hang up on every client and stop; prompt even while a slow reply is pending."""
        controller, self._controller = self._controller, None
        if controller is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._hang_up_all(), controller.loop)
        with contextlib.suppress(TimeoutError):
            future.result(timeout=2)
        controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- records ---------------------------------------------------------------------------

    @property
    def messages(self) -> list[Received]:
        """Stored messages in arrival order (a snapshot)."""
        with self._lock:
            return list(self._messages)

    @property
    def connections(self) -> int:
        """TCP connections accepted, including ones that failed the TLS handshake."""
        with self._lock:
            return self._connections

    @property
    def pipelined_envelopes(self) -> int:
        """MAIL commands that arrived with their RCPT already behind them (one client write)."""
        with self._lock:
            return self._counts["pipelined envelope"]

    @property
    def envelopes_ahead(self) -> int:
        """Envelopes that arrived before the reply to the previous message's end of DATA was
        sent (give the reply a delay, slow_data_reply, to see every one)."""
        with self._lock:
            return self._counts["envelope ahead"]

    @property
    def deferred_rcpts(self) -> int:
        """RCPT commands answered 450 by defer_pattern."""
        with self._lock:
            return self._counts["deferred rcpt"]

    @property
    def logins(self) -> int:
        """Successful AUTH commands."""
        with self._lock:
            return self._logins

    @property
    def failed_logins(self) -> int:
        """AUTH commands answered 535 (bad credentials or fail_login_after).

        smtplib's login() tries PLAIN and then LOGIN, so one refused login() counts 2.
        """
        with self._lock:
            return self._failed_logins

    @property
    def login_mechanisms(self) -> list[str]:
        """The mechanism of each successful login, in order (a snapshot)."""
        with self._lock:
            return list(self._login_mechanisms)

    def messages_to(self, address: str) -> list[Received]:
        """Stored messages whose envelope recipients include `address` (exact match)."""
        return [m for m in self.messages if address in m.rcpt_tos]

    def received_count_by_rcpt(self) -> collections.Counter[str]:
        """How many stored messages each envelope recipient got: duplicates show as > 1."""
        return collections.Counter(rcpt for m in self.messages for rcpt in m.rcpt_tos)

    def wait_for(self, count: int, timeout: float = 5) -> list[Received]:
        """Block until `count` messages are stored; TimeoutError says how many came."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} messages within {timeout}s, got {len(self._messages)}"
                )
            return list(self._messages)

    # -- control ---------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The faults in force now."""
        return self._faults

    def set_faults(self, **faults: Any) -> None:
        """Change the named faults (None turns one off); fault counting restarts from here."""
        new = dataclasses.replace(self._faults, **faults)
        with self._lock:
            self._faults = new
            self._counts.clear()

    def reset(self) -> None:
        """Clear records and counters (faults stay); connection numbers restart at 1."""
        with self._lock:
            self._messages.clear()
            self._connections = 0
            self._logins = 0
            self._failed_logins = 0
            self._login_mechanisms.clear()
            self._counts.clear()
            self._token_uses.clear()

    def _server_context(self) -> ssl.SSLContext:
        assert self.ca is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("localhost", HOST).configure_cert(context)
        return context

    # -- called from the server thread -----------------------------------------------------

    def _new_connection(self, smtp_kwargs: dict[str, Any]) -> _Connection:
        with self._lock:
            self._connections += 1
            number = self._connections
        connection = _Connection(self._handler, connection=number, **smtp_kwargs)
        self._live.add(connection)
        return connection

    def _count(self, event: str) -> int:
        with self._lock:
            self._counts[event] += 1
            return self._counts[event]

    def _store(self, received: Received) -> None:
        with self._arrived:
            self._messages.append(received)
            self._arrived.notify_all()

    def _token_valid(self, token: bytes) -> bool:
        """Whether an XOAUTH2 token is one the server accepts, and not yet used up."""
        with self._lock:
            if token.decode(errors="replace") not in self.oauth2_tokens:
                return False
            limit = self._faults.token_logins
            if limit is not None and self._token_uses[token] >= limit:
                return False
            self._token_uses[token] += 1
            return True

    def _login_result(self, mechanism: str, valid: bool, auth_data: Any) -> AuthResult:
        with self._lock:
            limit = self._faults.fail_login_after
            if valid and limit is not None and self._counts["login"] >= limit:
                valid = False
            if valid:
                self._logins += 1
                self._counts["login"] += 1
                self._login_mechanisms.append(mechanism)
            else:
                self._failed_logins += 1
        if valid:
            return AuthResult(success=True, auth_data=auth_data)
        # handled=False makes smtp_AUTH send the 535; handled=True would leave the client hanging.
        return AuthResult(success=False, handled=False)

    async def _hang_up_all(self) -> None:
        for connection in list(self._live):
            if connection.transport is not None:
                connection.transport.abort()
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1)
