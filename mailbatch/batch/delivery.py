"""Delivery: one message through a transport, exactly once, within the provider's limits.

The Sender owns the policy around the transport: journal state changes around each
attempt (each one conditional on the state the run left the recipient in), retries of
transient failures, reconnecting after drops and after ``max_messages_per_connection``, the
rate limit, the SIZE check, ``max_failures`` and stopping on request.

Two kinds of transient failure are told apart. A 4xx for one message (a recipient deferred
at RCPT, a 451 at the end of DATA) leaves the session usable: the message is set aside and
retried after the others, on its own backoff schedule, and the batch goes on at once. A
session failure (421, a drop, a timeout) can only be cured by a new session, after a wait:
the message in hand is retried on it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailbatch.batch.journal import TO_SEND, Journal
from mailbatch.errors import (
    ConnectError,
    InterruptedRun,
    SessionLostError,
    TooManyFailuresError,
)
from mailbatch.job.smtpsettings import FailureLimit, Rate, RetryPolicy
from mailbatch.smtp.transport import Ahead, Envelope, Outcome, Transport

__all__ = ["RESUME", "Sender"]

log = logging.getLogger(__name__)

_FINAL = ("sent", "refused", "failed", "uncertain", "dry-run")
_FAILURES = ("refused", "failed", "uncertain")  # counted by max_failures
RESUME = "run the same command again to resume"


@dataclass
class _Later:
    """A message a 4xx set aside: tries so far, when its first began, when it is due again."""

    attempts: int
    started: float
    due: float


class Sender:
    """Sends messages of one batch; the caller opens and closes nothing but this object.

    ``sleep(seconds)`` returns True when the wait was cut short by a stop request; it and
    ``monotonic`` are injectable so tests can drive the rate limit and backoff with a fake
    clock. ``resume`` is the advice stop messages end with (which batch, which command).
    """

    def __init__(self, transport: Transport, journal: Journal, batch: str, *,
                 retry: RetryPolicy | None = None, rate: Rate | None = None,
                 per_connection: int = 0, max_failures: FailureLimit | None = None,
                 stop: threading.Event | None = None,
                 sleep: Callable[[float], bool] | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, resume: str = RESUME) -> None:
        self.transport = transport
        self.journal = journal
        self.batch = batch
        self.retry = retry or RetryPolicy()
        self.rate = rate
        self.per_connection = per_connection
        self.max_failures = max_failures or FailureLimit(in_a_row=0)
        self.stop = stop or threading.Event()
        self.sleep = sleep or self.stop.wait  # returns True when stopped while waiting
        self.monotonic = monotonic
        self.rng = rng or random.Random()
        self.resume = resume
        self.on_connection = 0  # transactions completed on the current connection
        self.connections = 0
        self.later: dict[str, _Later] = {}  # set aside by a 4xx, retried after the others
        self.failures_in_a_row = 0
        self.failures = 0
        self._next_slot: float | None = None
        self._open = False

    def __enter__(self) -> Sender:
        self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._open = False
        abort = getattr(self.transport, "close_quietly", None)
        if abort is not None and exc_type is not None and not issubclass(
                exc_type, InterruptedRun | TooManyFailuresError):
            abort()  # mid-transaction (a second Ctrl-C, a journal error): no QUIT, no waiting
        else:
            self.transport.close()

    def connect(self) -> None:
        """Open the session; ConnectError and LoginError propagate to the caller."""
        self.transport.open()
        self._open = True
        self.connections += 1
        self.on_connection = 0

    def _ensure_open(self) -> None:
        """Reconnect when the session was lost, has carried its ``per_connection`` share, or
        the server hung up since its last reply (after a 250, or on a client that waited for
        a retry): found before a message is risked on it, so it costs no attempt."""
        if self._open and getattr(self.transport, "is_open", True) and not (
                self.per_connection and self.on_connection >= self.per_connection):
            alive = getattr(self.transport, "alive", None)  # a look, never a wait
            if alive is None or alive():
                return
        if self._open:
            self.transport.close()
        self._open = False
        self.connect()

    def deliver(self, key: str, sender: str, recipients: list[str], data: bytes,
                name: str, ahead: Ahead | None = None,
                while_waiting: Callable[[], None] | None = None) -> Outcome:
        """Send one message and record its state; raise only to stop the batch.

        Returns a final outcome (sent, refused, failed, uncertain), ``deferred`` (its
        retries are used up; the next run sends it) or ``later``: a 4xx set it aside, and it
        is in ``later`` to be delivered again after the others (waiting here for its turn).
        ``ahead`` and ``while_waiting`` go to the transport (see Transport.send); the next
        envelope goes ahead only if that message will follow at once on this connection.

        A LoginError on reconnecting, SessionLostError, TooManyFailuresError, InterruptedRun
        and StateError stop the batch; the message in hand is then ``pending`` (or
        ``uncertain``/``deferred``) in the journal, never lost.
        """
        if self.stop.is_set():
            raise InterruptedRun(f"stopped before the batch finished; {self.resume}")
        set_aside = self.later.pop(key, None)
        limit = self.transport.max_size
        if limit and len(data) > limit:
            outcome = Outcome("failed", None, f"message is {len(data)} bytes, larger than the "
                              f"{limit} bytes the server accepts (SIZE); nothing was sent: "
                              "make its attachments smaller")
            self.journal.mark(self.batch, key, outcome.status, None, outcome.message,
                              expect=TO_SEND)
            self._count(outcome)
            return outcome
        if set_aside is not None:
            self._wait(set_aside.due, "to retry a deferred message")
        started = set_aside.started if set_aside else self.monotonic()
        attempt = set_aside.attempts if set_aside else 0
        tries = 0
        while True:
            attempt += 1
            tries += 1
            uncertain = False

            def before_end() -> None:
                nonlocal uncertain
                self.journal.mark(self.batch, key, "uncertain", None,
                                  "end of DATA sent, no reply recorded", expect=TO_SEND)
                uncertain = True

            try:
                self._ensure_open()
                self._wait_for_slot()
                last = self.transport.send(sender, recipients, data, name, before_end,
                                           self._announcing(ahead), while_waiting)
            except ConnectError as err:
                self._open = False
                last = Outcome("retry", None, str(err), session_lost=True)
            expect = ("uncertain",) if uncertain else TO_SEND
            if last.status in _FINAL:
                self.on_connection += 1
                self.journal.mark(self.batch, key, last.status, last.code, last.message,
                                  attempts=tries, expect=expect)
                self._count(last)
                return last
            # Transient: the server did not take the message, so it may be sent again.
            elapsed = self.monotonic() - started
            if attempt >= self.retry.attempts or elapsed >= self.retry.max_time:
                self.journal.mark(self.batch, key, "deferred", last.code,
                                  f"gave up after {attempt} attempt(s): {last.message}",
                                  attempts=tries, expect=expect)
                if last.session_lost:
                    raise SessionLostError(f"{name}: the server kept failing ({last.message}); "
                                           f"the rest of the batch is pending: {self.resume} "
                                           "later")
                return Outcome("deferred", last.code,
                               f"gave up after {attempt} attempt(s): {last.message}")
            delay = min(self.retry.max_backoff, self.retry.backoff * 2 ** (attempt - 1))
            delay = min(delay * self.rng.uniform(0.5, 1.0), max(0.0, self.retry.max_time - elapsed))
            if not last.session_lost:
                # One message deferred, the session fine: the batch goes on at once, and this
                # message is tried again after the others (see ``later``).
                self.on_connection += 1
                self.journal.mark(self.batch, key, "pending", last.code,
                                  f"{last.message}; to be tried again in this run",
                                  attempts=tries, expect=expect)
                self.later[key] = _Later(attempt, started, self.monotonic() + delay)
                return Outcome("later", last.code,
                               f"{last.message}; tried again after the others")
            if uncertain:  # a 421 answer to the end of DATA: definitely not delivered
                self.journal.mark(self.batch, key, "pending", last.code, last.message,
                                  expect=expect)
            log.info("%s: %s; retrying on a new connection in %.2fs (attempt %d of %d)", name,
                     last.message, delay, attempt + 1, self.retry.attempts)
            self.transport.close()  # a fresh session (TLS and login) for the retry
            self._open = False
            if self.sleep(delay):
                self.journal.mark(self.batch, key, "pending", last.code, last.message,
                                  attempts=tries, expect=TO_SEND)
                raise InterruptedRun(f"stopped while waiting to retry; {self.resume}")

    def _count(self, outcome: Outcome) -> None:
        """``max_failures``: permanent failures and uncertain outcomes, in a row and in all."""
        if outcome.status == "sent":
            self.failures_in_a_row = 0
            return
        if outcome.status not in _FAILURES:
            return
        self.failures_in_a_row += 1
        self.failures += 1
        limit = self.max_failures
        if limit.in_a_row and self.failures_in_a_row >= limit.in_a_row:
            why = f"{self.failures_in_a_row} messages in a row"
        elif limit.in_all and self.failures >= limit.in_all:
            why = f"{self.failures} messages in this run"
        else:
            return
        raise TooManyFailuresError(
            f"stopped: {why} were refused, failed or left uncertain (smtp.max_failures; the "
            f"last: {outcome.status} {outcome.code or ''} {outcome.message}); the server or the "
            "job may be failing every message, so the rest of the batch is pending. Read the "
            f"report, fix the cause, then {self.resume}")

    def _wait(self, until: float, what: str) -> None:
        """Sleep until ``until`` (monotonic), or raise InterruptedRun if stopped meanwhile."""
        remaining = until - self.monotonic()
        if remaining > 0 and self.sleep(remaining):
            raise InterruptedRun(f"stopped while waiting {what}; {self.resume}")

    def _announcing(self, ahead: Ahead | None) -> Ahead | None:
        """``ahead``, passing on the next envelope only when nothing comes between: no
        rate limit wait, no reconnect for ``per_connection``, no stop, within SIZE."""
        if ahead is None:
            return None

        def announce() -> Envelope | None:
            upcoming = ahead()
            limit = self.transport.max_size
            if upcoming is None or self.rate is not None or self.stop.is_set() or (
                    self.per_connection and self.on_connection + 2 > self.per_connection) or (
                    limit and upcoming.size > limit):
                return None
            return upcoming

        return announce

    def _wait_for_slot(self) -> None:
        """Space transactions ``rate.interval`` apart (a provider's ``N/minute`` limit)."""
        if self.rate is None:
            return
        now = self.monotonic()
        if self._next_slot is not None and now < self._next_slot:
            self._wait(self._next_slot, "for the rate limit")
            now = self.monotonic()
        self._next_slot = max(now, self._next_slot or now) + self.rate.interval
