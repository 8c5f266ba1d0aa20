"""Opening an SMTP session: TLS with a verified certificate (implicit or STARTTLS), login,
and smtplib's debug output with every credential redacted."""

from __future__ import annotations

import base64
import contextlib
import hmac
import logging
import re
import smtplib
import socket
import ssl
from typing import TYPE_CHECKING, Any

from mailbatch.errors import ConnectError, LoginError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer
from mailbatch.job.smtpsettings import SmtpSettings

__all__ = ["connect", "hang_up", "login", "quit_politely", "reason", "reply_text",
           "tls_context", "token_refused"]

log = logging.getLogger(__name__)  # --debug-smtp: the conversation, credentials redacted

_AUTH_COMMAND = re.compile(r"(?i)^send: b?['\"](AUTH +[A-Z0-9_-]+)")
_FINAL_REPLY = re.compile(r"^reply: b'[2-5]\d\d[ -]")


class _SMTP(smtplib.SMTP):
    """smtplib's SMTP with its debug output routed to logging, AUTH exchanges redacted.

    Everything the client sends from ``AUTH`` until the server's final (non-334) reply is
    replaced: PLAIN's initial response, LOGIN's separate username and password lines, and
    the XOAUTH2 token are all credentials, base64 or not. Message content (the only thing
    sent as bytes; commands are text) is logged as its size: it carries the recipients'
    data, and a 20 MB attachment would otherwise become 20 MB of log.
    """

    _in_auth = False

    def send(self, s: str | ReadableBuffer) -> None:
        if not (isinstance(s, bytes | bytearray) and s != b".\r\n" and self.debuglevel):
            super().send(s)
            return
        self._print_debug("send:", f"[message content: {len(s):,} bytes]")
        level, self.debuglevel = self.debuglevel, 0  # not repr() the content as well
        try:
            super().send(s)
        finally:
            self.debuglevel = level

    def _print_debug(self, *args: object) -> None:
        text = " ".join(str(a) for a in args)
        if text.startswith("send:"):
            verb = _AUTH_COMMAND.match(text)
            if verb:
                text = f"send: '{verb.group(1)} [redacted]'"
                self._in_auth = True
            elif self._in_auth:
                text = "send: '[redacted]'"
        elif self._in_auth and _FINAL_REPLY.match(text) and not text.startswith("reply: b'334"):
            self._in_auth = False
        log.debug("smtp %s", text)

    # smtplib encodes credentials as ASCII and crashes on a password such as "Grüße€": RFC
    # 4954 and 4616 (PLAIN) carry UTF-8, and so do LOGIN and CRAM-MD5 servers in practice.

    def auth(self, mechanism: str, authobject: Any, *, initial_response_ok: bool = True,
             ) -> tuple[int, bytes]:
        """smtplib's ``auth``, with each response sent as UTF-8 instead of ASCII."""
        mechanism = mechanism.upper()
        first = authobject() if initial_response_ok else None
        # smtplib's auth_login tells the username's turn from the password's by this count.
        if first is not None:
            code, reply = self.docmd("AUTH", f"{mechanism} {_b64(first)}")
            self._auth_challenge_count = 1
        else:
            code, reply = self.docmd("AUTH", mechanism)
            self._auth_challenge_count = 0
        while code == 334:
            self._auth_challenge_count += 1
            if self._auth_challenge_count > smtplib._MAXCHALLENGE:  # type: ignore[attr-defined]
                raise smtplib.SMTPException(f"server kept sending challenges ({reply!r})")
            code, reply = self.docmd(_b64(authobject(base64.decodebytes(reply))))
        if code in (235, 503):
            return code, reply
        raise smtplib.SMTPAuthenticationError(code, reply)

    def auth_cram_md5(self, challenge: bytes | None = None) -> str | None:  # type: ignore[override]
        if challenge is None:
            return None
        password = (self.password or "").encode("utf-8")
        return f"{self.user} {hmac.HMAC(password, challenge, 'md5').hexdigest()}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class _SMTP_SSL(_SMTP, smtplib.SMTP_SSL):
    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        """The TLS socket, told to acknowledge at once what arrives next. After the
        handshake a TLS 1.3 server writes its session tickets, then the greeting; with Nagle
        on (Postfix, most MTAs) the greeting waits for the tickets' ACK, which a client that
        only reads delays by some 40 ms (against Postfix 3.7: 45 ms of a 50 ms login)."""
        sock: socket.socket = super()._get_socket(  # type: ignore[misc]  # not in typeshed
            host, port, timeout)
        quick_ack = getattr(socket, "TCP_QUICKACK", None)  # Linux only
        if quick_ack is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, quick_ack, 1)
        return sock


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """Certificate and host name verified (``ssl.create_default_context``), against
    ``ca_file`` when the server uses a private CA; unverified only when the job says so."""
    context = ssl.create_default_context(
        cafile=str(settings.ca_file) if settings.ca_file else None)
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect(settings: SmtpSettings, debug: bool = False) -> smtplib.SMTP:
    """A session that has said EHLO over TLS, not yet logged in; ConnectError otherwise."""
    s = settings
    where = s.where
    try:
        context = tls_context(s)
    except (OSError, ssl.SSLError) as err:
        raise ConnectError(f"{s.ca_file}: cannot load the CA file: {err}; check "
                           "smtp.ca_file") from None
    smtp: smtplib.SMTP | None = None
    starttls_offered = True
    try:
        if s.security == "tls":
            smtp = _SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            smtp = _SMTP(s.host, s.port, timeout=s.timeout)
        if debug:
            smtp.set_debuglevel(1)
        assert smtp.sock is not None  # connected by the constructor
        smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        smtp.ehlo()
        if s.security == "starttls":
            starttls_offered = smtp.has_extn("starttls")
            if starttls_offered:
                smtp.starttls(context=context)
                smtp.ehlo()
    except ssl.SSLCertVerificationError as err:
        hang_up(smtp)
        raise ConnectError(f"{where}: the server's TLS certificate is not trusted "
                           f"({err.verify_message}); if it uses a private CA, give it with "
                           "smtp.ca_file") from None
    except (OSError, smtplib.SMTPException) as err:
        hang_up(smtp)
        if isinstance(err, ssl.SSLError) and err.reason == "WRONG_VERSION_NUMBER":
            # What OpenSSL makes of a "220 ..." greeting in clear text.
            raise ConnectError(f"{where}: the server did not answer in TLS: this port starts "
                               "in plain text; use security: starttls (usually port 587), "
                               "or the server's implicit-TLS port (usually 465)") from None
        raise ConnectError(f"{where}: cannot connect: {reason(err)}; check smtp.host "
                           "and smtp.port, and that the server is up") from None
    if not starttls_offered:  # never send the password over an unencrypted connection
        hang_up(smtp)
        raise ConnectError(f"{where}: the server does not offer STARTTLS; refusing to "
                           "log in or send without encryption (use security: tls if it "
                           "speaks implicit TLS, usually on port 465)")
    return smtp


def login(smtp: smtplib.SMTP, settings: SmtpSettings, secret: str) -> None:
    """Log in with the password (or XOAUTH2 token); on failure the session is closed and
    LoginError (refused: a resume will not help) or ConnectError (transient) raised."""
    s = settings
    where = s.where
    try:
        if s.password and s.password.oauth2:
            token = f"user={s.username}\x01auth=Bearer {secret}\x01\x01"
            smtp.auth("XOAUTH2", lambda challenge=None: token if challenge is None else "",
                      initial_response_ok=True)
        else:
            smtp.login(s.username or "", secret)
    except smtplib.SMTPAuthenticationError as err:
        quit_politely(smtp)
        text = reply_text(err.smtp_error)
        raise LoginError(f"login refused by {s.host} for {s.username}: {err.smtp_code} "
                         f"{text}", code=err.smtp_code, reply=text) from None
    except smtplib.SMTPNotSupportedError:
        quit_politely(smtp)
        raise LoginError(f"{where} does not offer AUTH; remove smtp.username to send "
                         "without logging in") from None
    except smtplib.SMTPException as err:
        quit_politely(smtp)
        raise ConnectError(f"{where}: login failed: {reason(err)}") from None
    except OSError as err:
        quit_politely(smtp)
        raise ConnectError(f"{where}: connection lost during login: {reason(err)}") from None


def token_refused(settings: SmtpSettings, err: LoginError) -> bool:
    """Whether a refused login may only need a fresh OAuth2 token: the secret is a token from
    ``oauth2_token_command`` (which can print a new one), and the server refused it as a bad
    credential (535) or said it expired. Tokens last about an hour; a batch can last longer."""
    source = settings.password
    return bool(source and source.oauth2 and source.kind == "command") and (
        err.code == 535 or "expired" in err.reply.lower())


def quit_politely(smtp: smtplib.SMTP) -> None:
    """QUIT, or just close if the server is past answering."""
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def hang_up(smtp: smtplib.SMTP | None) -> None:
    """Drop a connection without a QUIT (it never got going, or cannot take one now)."""
    if smtp is not None:
        smtp.close()


def reply_text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def reason(err: BaseException) -> str:
    """An exception from smtplib or the socket, as a few words for the user."""
    if isinstance(err, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, smtplib.SMTPResponseException):
        return f"{err.smtp_code} {reply_text(err.smtp_error)}"
    return str(err) or type(err).__name__
