"""Transports: where composed messages go. One small contract, two backends.

``SmtpTransport`` (here) holds one TLS session (opened by session.py) for many messages;
``FileTransport`` (outbox.py) is the dry run.
``send`` never raises for a per-message problem: it returns an Outcome, so the caller decides
between retrying, recording and moving on. Session problems (connect, login) raise.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mailbatch.errors import LoginError, MailbatchError
from mailbatch.job.smtpsettings import SmtpSettings
from mailbatch.smtp import session
from mailbatch.smtp.session import reason, reply_text
from mailbatch.smtp.wire import GROUP_MAX, dot_stuff, group, hung_up, write_end

__all__ = ["Ahead", "Envelope", "Outcome", "SmtpTransport", "Transport"]

log = logging.getLogger(__name__)
# Security warnings have their own logger so the CLI can show them even with -q.
security_log = logging.getLogger("mailbatch.security")


@dataclass(frozen=True)
class Outcome:
    """What happened to one message.

    status: sent, refused, failed (final); retry (not taken, safe to send again); uncertain
    (the end of DATA went out and no reply that says "not taken" came back); dry-run.
    ``session_lost``: with retry, the session ended (a drop, a timeout, a 421, a reply that
    leaves its state unknown); otherwise the server is there and the next message can follow.
    """

    status: str
    code: int | None = None
    message: str = ""
    session_lost: bool = False


@dataclass(frozen=True)
class Envelope:
    """The next message's envelope, written with the current message's final ``.``."""

    sender: str
    recipients: tuple[str, ...]
    size: int


Ahead = Callable[[], "Envelope | None"]


class Transport(Protocol):
    max_size: int | None

    def open(self) -> None: ...
    def close(self) -> None: ...
    def send(self, sender: str, recipients: list[str], data: bytes, name: str,
             before_end: Callable[[], None], ahead: Ahead | None = None,
             while_waiting: Callable[[], None] | None = None) -> Outcome: ...




class SmtpTransport:
    """One authenticated, certificate-verified session, reused for every message."""

    def __init__(self, settings: SmtpSettings, secret: Callable[[], str], *,
                 debug: bool = False) -> None:
        self.settings = settings
        self._secret = secret
        self._cached_secret: str | None = None
        self.debug = debug
        self.smtp: smtplib.SMTP | None = None
        self.max_size: int | None = None
        self.pipelining = False
        self.where = settings.where
        self._warned = False
        # The next message's envelope, written with the previous "." and its replies unread
        # (RFC 2920 3.1: message content may lead a pipelined group).
        self._ahead: Envelope | None = None
        self.sent_ahead = 0  # envelopes sent that way (for tests and debugging)

    def __enter__(self) -> SmtpTransport:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self.smtp is not None

    def open(self) -> None:
        self._ahead = None
        if not self.settings.verify and not self._warned:
            self._warned = True  # once per run, however often the session is reopened
            security_log.warning(
                "%s: smtp.verify_certificate is false: the server's TLS certificate is NOT "
                "checked, so anyone on the network path can read the password and messages; "
                "give the server's CA with smtp.ca_file instead", self.where)
        smtp = session.connect(self.settings, self.debug)
        if self.settings.username:
            if self._cached_secret is None:
                self._cached_secret = self._secret()
            try:
                session.login(smtp, self.settings, self._cached_secret)
            except LoginError as err:
                # An OAuth2 token expires (in about an hour): a new one, once, then give up.
                if not session.token_refused(self.settings, err):
                    raise
                smtp = self._log_in_afresh(err)
        self.smtp = smtp
        size = smtp.esmtp_features.get("size", "").strip()
        self.max_size = int(size) if size.isdigit() and int(size) > 0 else None
        self.pipelining = self.settings.pipelining and smtp.has_extn("pipelining")

    def _log_in_afresh(self, refused: LoginError) -> smtplib.SMTP:
        """Run oauth2_token_command again and log in once more on a new session (the refused
        one was closed); LoginError if that fails too. The token is never logged."""
        log.info("%s: %s; getting a fresh token from smtp.oauth2_token_command and logging "
                 "in again", self.where, refused)
        self._cached_secret = None
        try:
            self._cached_secret = self._secret()
        except MailbatchError as err:
            raise LoginError(f"{refused}; a fresh token could not be had: {err}",
                             code=refused.code, reply=refused.reply) from None
        smtp = session.connect(self.settings, self.debug)
        try:
            session.login(smtp, self.settings, self._cached_secret)
        except LoginError as err:
            raise LoginError(f"{err} (with a fresh token from smtp.oauth2_token_command, "
                             "after the previous one was refused too)", code=err.code,
                             reply=err.reply) from None
        return smtp

    def close(self) -> None:
        if self._ahead is not None:  # the server may be reading a message: QUIT would be in it
            self.close_quietly()
            return
        smtp, self.smtp = self.smtp, None
        if smtp is not None:
            session.quit_politely(smtp)

    def alive(self) -> bool:
        """Whether the idle session is still there (a server may hang up on a client that
        waited, say, for a retry); if not, it is closed. Never waits."""
        if self.smtp is None:
            return False
        if self._ahead is None and hung_up(self.smtp):
            self.close_quietly()
            return False
        return True

    def send(self, sender: str, recipients: list[str], data: bytes, name: str,
             before_end: Callable[[], None], ahead: Ahead | None = None,
             while_waiting: Callable[[], None] | None = None) -> Outcome:
        """One SMTP transaction. ``before_end`` runs just before the final ``.`` is sent:
        that is the moment the message may become delivered.

        ``ahead`` is asked for the next message's envelope just before the final write: its
        MAIL, RCPT and DATA go out in the same write as this message's ``.``. A server with
        Nagle's algorithm on (most MTAs) answers a lone small write that trails the ``.`` only
        after the client's delayed ACK, some 40 ms a message. ``while_waiting`` runs once the
        ``.`` is sent, while the server is busy with the message (work that does not depend on
        the reply overlaps the wait for it).
        """
        smtp = self.smtp
        assert smtp is not None, "send() before open()"
        announced, self._ahead = self._ahead, None
        if announced is not None and announced != Envelope(sender, tuple(recipients), len(data)):
            # Not the message announced (the caller changed its mind): its DATA may have been
            # accepted, and only hanging up ends that without delivering something.
            self.close_quietly()
            return Outcome("retry", None, "the session was left inside another message's "
                                          "envelope; reconnecting", session_lost=True)
        try:
            rejected, refused = self._envelope(smtp, sender, recipients, len(data),
                                               sent=announced is not None)
            if rejected is not None:
                return rejected
            if announced is not None and hung_up(smtp):
                # Accepted early, but the server has left (or spoke out of turn) since: send
                # nothing it might half-deliver; the message stays safe to send again.
                self.close_quietly()
                return Outcome("retry", None, "connection lost: the server closed it before "
                                              "the message was sent", session_lost=True)
            # The body goes out first: a failure while it does means "not delivered". The
            # "." then goes in a write of its own, with the next envelope: one small record.
            smtp.send(dot_stuff(data))
            tail = self._announce(ahead() if ahead is not None else None)
        except MailbatchError:  # the journal failed while composing the next message: stop
            self.close_quietly()
            raise
        except (smtplib.SMTPException, OSError) as err:  # a drop, a timeout, a garbled reply
            self.close_quietly()
            return Outcome("retry", None, f"connection lost: {reason(err)}", session_lost=True)
        try:
            before_end()
        except BaseException:
            self.close_quietly()  # the server is reading a message: only a hang-up ends it
            raise
        written = write_end(smtp, tail)  # the end of DATA, and the next envelope with it
        if while_waiting is not None and written is None:
            try:
                while_waiting()
            except BaseException:
                self.close_quietly()
                raise
        try:
            code, reply = smtp.getreply()
        except (smtplib.SMTPException, OSError) as err:
            self.close_quietly()
            lost = written or err
            return Outcome("uncertain", None, "connection lost after the message was sent, "
                           f"before the server confirmed it: {reason(lost)}")
        text = reply_text(reply)
        if written is not None or code == 421:
            self.close_quietly()  # the reply was still there to read, the session is not
        if code == 250:
            extra = f" (refused copies: {'; '.join(refused)})" if refused else ""
            return Outcome("sent", code, text + extra)
        if 400 <= code < 600:  # only these say the message was not taken
            # With the next envelope written, the server goes on to it: the session is fine.
            if code < 500:
                return Outcome("retry", code, f"{text} (at end of DATA)",
                               session_lost=self.smtp is None)
            return Outcome("failed", code, f"{text} (at end of DATA)")
        # A reply that is neither success nor refusal ("200 ok", "354", noise): nobody can
        # say whether the server kept the message, and the session is in an unknown state.
        self.close_quietly()
        shown = f"{code} {text}" if code > 0 else repr(text)
        return Outcome("uncertain", code if code > 0 else None, "the server answered the end "
                       f"of DATA with {shown}, which says neither accepted nor refused")

    def _announce(self, upcoming: Envelope | None) -> bytes:
        """The next envelope's commands, to be written with the final ``.``; b"" if none."""
        if upcoming is None or not self.pipelining:
            return b""
        text = group(self._commands(upcoming.sender, upcoming.recipients, upcoming.size))
        if text is None or len(text) + 3 > GROUP_MAX:
            return b""
        self._ahead = upcoming
        self.sent_ahead += 1
        return text.encode(self.smtp.command_encoding if self.smtp is not None else "ascii")

    def _commands(self, sender: str, recipients: list[str] | tuple[str, ...],
                  size: int) -> list[str]:
        return [f"MAIL FROM:<{sender}> SIZE={size}" if self.max_size else f"MAIL FROM:<{sender}>",
                *(f"RCPT TO:<{a}>" for a in recipients), "DATA"]

    def _envelope(self, smtp: smtplib.SMTP, sender: str, recipients: list[str],
                  size: int, sent: bool = False) -> tuple[Outcome | None, list[str]]:
        """MAIL, one RCPT per address, DATA; returns (a rejection or None, refused copies).
        ``sent``: the commands went out already, with the previous message's end.

        Where the server offers PIPELINING (RFC 2920) the commands go out in one write and the
        replies are read together: one round trip instead of two plus one per address. The
        lines are written directly, not with smtp.mail()/rcpt(): those parse each address again
        (about 20 us each), and these are addr-specs validated before the batch started.
        """
        commands = self._commands(sender, recipients, size)
        replies: list[tuple[int, bytes]] = []
        # Capped (GROUP_MAX): a client that writes without reading must also stay well inside
        # the socket buffers, or both sides can block writing (RFC 2920, 3.2).
        together = group(commands) if self.pipelining else None
        if together is not None:
            if not sent:
                smtp.send(together)
            try:
                for _ in commands:
                    replies.append(smtp.getreply())
            except smtplib.SMTPServerDisconnected:
                if not replies or replies[-1][0] != 421:
                    raise
                self.close_quietly()  # a 421 and a hang-up: the reply says why
        primary, refused = recipients[0], []
        for i, command in enumerate(commands):
            if i == len(replies):  # one command at a time: ask only while the answers allow
                smtp.send(f"{command}\r\n")
                replies.append(smtp.getreply())
            code, reply = replies[i]
            if i == 0:
                stage, ok = "MAIL FROM", code == 250
            elif i < len(commands) - 1:
                address = recipients[i - 1]
                stage, ok = f"RCPT TO {address}", code in (250, 251)
                if not ok and 500 <= code < 600 and address != primary:
                    refused.append(f"{address}: {code} {reply_text(reply)}")
                    continue  # a copy refused for good: the others still get the message
            else:
                stage, ok = "DATA", code == 354
            if not ok:
                # A pipelined DATA may have been accepted (354) all the same: the server now
                # waits for the message, and even a lone "." would deliver an empty one.
                abort = len(replies) == len(commands) and replies[-1][0] == 354
                return self._reject(code, reply, stage, abort=abort), refused
        return None, refused

    def _reject(self, code: int, reply: bytes, stage: str, *, abort: bool = False) -> Outcome:
        """A refusal before the message was sent. A 4xx or 5xx leaves the session usable
        (RSET ends the transaction), so one deferred or refused recipient costs no new
        connection; 421, a reply outside 2xx-5xx, or ``abort`` (the server is reading a
        message) end the session."""
        text = f"{reply_text(reply)} (at {stage})"
        unknown = code == 421 or code < 400 or code >= 600
        if abort or unknown:
            self.close_quietly()
        else:
            self._reset()
        if unknown or code < 500:
            return Outcome("retry", code, text, session_lost=self.smtp is None)
        status = "refused" if stage.startswith("RCPT") else "failed"
        return Outcome(status, code, text)

    def _reset(self) -> None:
        try:
            assert self.smtp is not None
            code, _ = self.smtp.docmd("RSET")
        except (OSError, smtplib.SMTPException, AssertionError):
            self.close_quietly()
            return
        if code != 250:
            self.close_quietly()

    def close_quietly(self) -> None:
        self._ahead = None
        smtp, self.smtp = self.smtp, None
        session.hang_up(smtp)
