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

from mailbatch.errors import ConnectError, InterruptedRun, SessionLostError
from mailbatch.job import Rate, RetryPolicy
from mailbatch.journal import Journal
from mailbatch.transport import Outcome, Transport

__all__ = ["Sender"]

log = logging.getLogger(__name__)

_FINAL = ("sent", "refused", "failed", "uncertain", "dry-run")


class Sender:
    """Sends messages of one batch; the caller opens and closes nothing but this object."""

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
        self.on_connection = 0
        self.connections = 0
        self._next_slot: float | None = None
        self._open = False

    def __enter__(self) -> Sender:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.transport.close()
        self._open = False

    def connect(self) -> None:
        """Open the session; ConnectError and LoginError propagate to the caller."""
        self.transport.open()
        self._open = True
        self.connections += 1
        self.on_connection = 0

    def _ensure_open(self) -> None:
        if self._open and getattr(self.transport, "is_open", True) and not (
                self.per_connection and self.on_connection >= self.per_connection):
            return
        if self._open:
            self.transport.close()
        self._open = False
        self.connect()

    def deliver(self, key: str, sender: str, recipients: list[str], data: bytes,
                name: str) -> Outcome:
        """Send one message and record its final state; raise only to stop the batch."""
        if self.stop.is_set():
            raise InterruptedRun("stopped before the batch finished; run the same command "
                                 "again to resume")
        limit = self.transport.max_size
        if limit and len(data) > limit:
            outcome = Outcome("failed", None, f"message is {len(data)} bytes, larger than the "
                              f"{limit} bytes the server accepts (SIZE); nothing was sent")
            self.journal.mark(self.batch, key, outcome.status, None, outcome.message)
            return outcome
        started = self.monotonic()
        attempt = 0
        while True:
            attempt += 1
            last: Outcome
            try:
                self._ensure_open()
                self._wait_for_slot()
                last = self.transport.send(sender, recipients, data, name,
                                           lambda: self._mark_uncertain(key))
            except ConnectError as err:
                self._open = False
                last = Outcome("retry", None, str(err))
                lost_session = True
            else:
                lost_session = last.status == "retry" and not getattr(
                    self.transport, "is_open", True)
                if last.status in _FINAL:
                    self.on_connection += last.status == "sent"
                    self.journal.mark(self.batch, key, last.status, last.code, last.message)
                    return last
            elapsed = self.monotonic() - started
            if attempt >= self.retry.attempts or elapsed >= self.retry.max_time:
                self.journal.mark(self.batch, key, "deferred", last.code,
                                  f"gave up after {attempt} attempt(s): {last.message}")
                if lost_session:
                    raise SessionLostError(f"{name}: the server kept failing ({last.message}); "
                                           "the rest of the batch is pending: run again later "
                                           "to resume")
                log.warning("%s deferred after %d attempts: %s", name, attempt, last.message)
                return Outcome("deferred", last.code, last.message)
            delay = min(self.retry.max_backoff, self.retry.backoff * 2 ** (attempt - 1))
            delay = min(delay * self.rng.uniform(0.5, 1.0), max(0.0, self.retry.max_time - elapsed))
            log.info("%s: %s; retrying in %.1fs (attempt %d of %d)", name, last.message, delay,
                     attempt + 1, self.retry.attempts)
            self.transport.close()
            self._open = False
            if self.sleep(delay):
                self.journal.mark(self.batch, key, "pending", last.code, last.message)
                raise InterruptedRun("stopped while waiting to retry; run the same command "
                                     "again to resume")

    def _mark_uncertain(self, key: str) -> None:
        self.journal.mark(self.batch, key, "uncertain", None,
                          "end of DATA sent, no reply recorded", attempt=True)

    def _wait_for_slot(self) -> None:
        """Space transactions ``rate.interval`` apart (a provider's ``N/minute`` limit)."""
        if self.rate is None:
            return
        now = self.monotonic()
        if self._next_slot is not None and now < self._next_slot:
            if self.sleep(self._next_slot - now):
                raise InterruptedRun("stopped while waiting for the rate limit; run the same "
                                     "command again to resume")
            now = self.monotonic()
        self._next_slot = max(now, self._next_slot or now) + self.rate.interval
