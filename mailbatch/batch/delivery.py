"""Delivery: one message through a transport, exactly once, within the provider's limits.

The Sender owns the policy around the transport: journal state changes around each
attempt, retries with backoff for transient failures, reconnecting after drops and after
``max_messages_per_connection``, the rate limit, the SIZE check, and stopping on request.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from mailbatch.batch.journal import Journal
from mailbatch.errors import ConnectError, InterruptedRun, SessionLostError
from mailbatch.job.smtpsettings import Rate, RetryPolicy
from mailbatch.smtp.transport import AfterEnd, Envelope, Outcome, Transport

__all__ = ["Sender"]

log = logging.getLogger(__name__)

_FINAL = ("sent", "refused", "failed", "uncertain", "dry-run")
_RESUME = "run the same command again to resume"


class Sender:
    """Sends messages of one batch; the caller opens and closes nothing but this object.

    ``sleep(seconds)`` returns True when the wait was cut short by a stop request; it and
    ``monotonic`` are injectable so tests can drive the rate limit and backoff with a fake
    clock.
    """

    def __init__(self, transport: Transport, journal: Journal, batch: str, *,
                 retry: RetryPolicy | None = None, rate: Rate | None = None,
                 per_connection: int = 0, stop: threading.Event | None = None,
                 sleep: Callable[[float], bool] | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.transport = transport
        self.journal = journal
        self.batch = batch
        self.retry = retry or RetryPolicy()
        self.rate = rate
        self.per_connection = per_connection
        self.stop = stop or threading.Event()
        self.sleep = sleep or self.stop.wait  # returns True when stopped while waiting
        self.monotonic = monotonic
        self.rng = rng or random.Random()
        self.on_connection = 0  # transactions completed on the current connection
        self.connections = 0
        self._next_slot: float | None = None
        self._open = False

    def __enter__(self) -> Sender:
        self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._open = False
        abort = getattr(self.transport, "close_quietly", None)
        if abort is not None and exc_type is not None and not issubclass(exc_type,
                                                                         InterruptedRun):
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
        """Reconnect when the session was lost or has carried its ``per_connection`` share."""
        if self._open and getattr(self.transport, "is_open", True) and not (
                self.per_connection and self.on_connection >= self.per_connection):
            return
        if self._open:
            self.transport.close()
        self._open = False
        self.connect()

    def deliver(self, key: str, sender: str, recipients: list[str], data: bytes,
                name: str, after_end: AfterEnd | None = None) -> Outcome:
        """Send one message and record its final state; raise only to stop the batch.
        ``after_end`` is passed to the transport (see Transport.send); it may run more than
        once if the message is retried. The next envelope it announces goes to the transport
        only if the next message will be sent right after this one on this connection.

        A LoginError on reconnecting, SessionLostError, InterruptedRun and StateError stop the
        batch; the message in hand is then ``pending`` (or ``uncertain``/``deferred``) in the
        journal, never lost.
        """
        if self.stop.is_set():
            raise InterruptedRun(f"stopped before the batch finished; {_RESUME}")
        limit = self.transport.max_size
        if limit and len(data) > limit:
            outcome = Outcome("failed", None, f"message is {len(data)} bytes, larger than the "
                              f"{limit} bytes the server accepts (SIZE); nothing was sent: "
                              "make its attachments smaller")
            self.journal.mark(self.batch, key, outcome.status, None, outcome.message)
            return outcome
        started = self.monotonic()
        attempt = 0
        while True:
            attempt += 1
            uncertain = False

            def before_end() -> None:
                nonlocal uncertain
                self.journal.mark(self.batch, key, "uncertain", None,
                                  "end of DATA sent, no reply recorded")
                uncertain = True

            try:
                self._ensure_open()
                self._wait_for_slot()
                last = self.transport.send(sender, recipients, data, name, before_end,
                                           self._announcing(after_end))
            except ConnectError as err:
                self._open = False
                last = Outcome("retry", None, str(err))
            if last.status in _FINAL:
                self.on_connection += 1
                self.journal.mark(self.batch, key, last.status, last.code, last.message,
                                  attempts=attempt)
                return last
            # A transient failure: the server did not take the message, so it may be resent.
            # A 4xx reply (421 aside: closing) means the server is there and answering, even
            # when the transport hung up to end a pipelined envelope; else the session went.
            lost_session = last.code is None or last.code == 421 or not 400 <= last.code < 500
            if uncertain:  # a 4xx answer to the end of DATA: definitely not delivered
                self.journal.mark(self.batch, key, "pending", last.code, last.message)
            elapsed = self.monotonic() - started
            if attempt >= self.retry.attempts or elapsed >= self.retry.max_time:
                self.journal.mark(self.batch, key, "deferred", last.code,
                                  f"gave up after {attempt} attempt(s): {last.message}",
                                  attempts=attempt)
                if lost_session:
                    raise SessionLostError(f"{name}: the server kept failing ({last.message}); "
                                           f"the rest of the batch is pending: {_RESUME} "
                                           "later")
                log.warning("%s deferred after %d attempts: %s", name, attempt, last.message)
                return Outcome("deferred", last.code, last.message)
            delay = min(self.retry.max_backoff, self.retry.backoff * 2 ** (attempt - 1))
            delay = min(delay * self.rng.uniform(0.5, 1.0), max(0.0, self.retry.max_time - elapsed))
            log.info("%s: %s; retrying in %.2fs (attempt %d of %d)", name, last.message, delay,
                     attempt + 1, self.retry.attempts)
            self.transport.close()  # a fresh session (TLS and login) for the retry
            self._open = False
            if self.sleep(delay):
                self.journal.mark(self.batch, key, "pending", last.code, last.message,
                                  attempts=attempt)
                raise InterruptedRun(f"stopped while waiting to retry; {_RESUME}")

    def _announcing(self, after_end: AfterEnd | None) -> AfterEnd | None:
        """``after_end``, passing on the next envelope only when nothing comes between: no
        rate limit wait, no reconnect for ``per_connection``, no stop, within SIZE."""
        if after_end is None:
            return None

        def announce() -> Envelope | None:
            upcoming = after_end()
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
            if self.sleep(self._next_slot - now):
                raise InterruptedRun(f"stopped while waiting for the rate limit; {_RESUME}")
            now = self.monotonic()
        self._next_slot = max(now, self._next_slot or now) + self.rate.interval
