"""The send loop: every message still to send, in list order, composed ahead of the server;
then the messages a 4xx set aside, again, until each is delivered, final or out of retries."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from mailbatch.batch.delivery import Sender
from mailbatch.batch.journal import TO_SEND, Journal
from mailbatch.batch.lock import JobLock
from mailbatch.batch.spool import Spool
from mailbatch.job.model import Job
from mailbatch.job.recipients import Recipient, iter_recipients
from mailbatch.message.attachments import AttachmentProblem
from mailbatch.message.compose import compose
from mailbatch.message.parts import AttachmentCache
from mailbatch.message.render import Rendered, Renderer, RenderFailure
from mailbatch.smtp.transport import Envelope, Outcome

__all__ = ["LOOKAHEAD", "WARNED", "Composed", "Lookahead", "SendPlan", "composed", "send_all"]

log = logging.getLogger(__name__)

LOOKAHEAD = 1024 * 1024  # messages up to this size are composed before their turn
Composed = tuple[int, Recipient, Rendered, bytes]
Progress = Callable[[int, int, str, Outcome], None]
WARNED = ("refused", "failed", "uncertain", "deferred")  # each logged once, as a warning


@dataclass
class SendPlan:
    """What the loop needs besides the sender: where messages come from and who hears."""

    job: Job
    renderer: Renderer
    journal: Journal
    batch: str
    total: int
    spool: Spool | None = None  # None: every message is rendered when taken
    adjust: Callable[[Rendered], Rendered] | None = None  # e.g. a test send's readdressing
    limit: int | None = None  # only the first ``limit`` recipients (a test send)
    progress: Progress | None = None
    lock: JobLock | None = None
    on_sent: Callable[[str, Outcome], None] | None = None  # after each final outcome


def send_all(plan: SendPlan, sender: Sender) -> None:
    """Send every message still to send, then those set aside by a 4xx (after the others,
    each when its backoff has passed), until none is left."""
    _send(plan, sender, composed(plan), ahead=True)
    while sender.later:
        waiting = set(sender.later)
        reached = _send(plan, sender, composed(plan, only=waiting), ahead=False)
        for key in waiting - reached:  # taken off the list meanwhile: the next run decides
            sender.later.pop(key, None)


def _send(plan: SendPlan, sender: Sender, messages: Iterator[Composed], ahead: bool) -> set[str]:
    """One pass. The first (``ahead``) sends the next message's envelope with each message's
    end; set-aside messages each wait for their own time, so nothing is announced ahead of
    them, and that pass returns the keys it reached (the first returns none: memory stays
    flat for any batch size)."""
    sender_address = plan.job.sender_address  # a property that parses ``from`` each call
    upcoming = Lookahead(messages, sender_address)
    reached: set[str] = set()
    while (message := upcoming.take()) is not None:
        done, recipient, rendered, data = message
        del message
        if plan.lock is not None:
            plan.lock.check()
        if not ahead:
            reached.add(recipient.key)
        name = f"{recipient.index + 1:06d}-{recipient.address}"
        small = len(data) <= LOOKAHEAD  # a large message is freed before the next is composed
        outcome = sender.deliver(recipient.key, sender_address, rendered.envelope_recipients,
                                 data, name, upcoming.next_envelope if ahead and small else None,
                                 upcoming.compose_ahead if ahead and small else None)
        del data
        if plan.on_sent is not None and outcome.status != "later":
            plan.on_sent(recipient.key, outcome)
        if outcome.status in WARNED:  # logged once here; "later" is not final yet
            log.warning("%s: %s %s %s", recipient.address, outcome.status, outcome.code or "",
                        outcome.message)
        if plan.progress:
            plan.progress(done, plan.total, recipient.address, outcome)
    return reached


def composed(plan: SendPlan, only: Collection[str] | None = None) -> Iterator[Composed]:
    """The messages still to send (or those of ``only``), in list order, composed; the ones
    that cannot be composed any more are recorded as failed on the way."""
    cache = AttachmentCache()
    journal, batch = plan.journal, plan.batch
    spool = plan.spool if only is None else None  # the spool is read once, in list order
    for done, recipient in enumerate(iter_recipients(plan.job), start=1):
        if plan.limit and done > plan.limit:
            return
        key = recipient.key
        if only is not None and key not in only:
            continue
        # A spooled message was registered to send by this run's render pass, so only the
        # others are looked up (the mark before its end checks the state all the same).
        spooled = spool.take(recipient) if spool is not None else None
        if spooled is None and journal.status(batch, key) not in TO_SEND:
            continue
        try:
            rendered = spooled
            if rendered is None:
                rendered = plan.renderer.render(recipient)
                if plan.adjust is not None:  # a spooled message was adjusted when spooled
                    rendered = plan.adjust(rendered)
            data = compose(rendered, cache)
        except (RenderFailure, AttachmentProblem) as err:  # a file changed since prepare()
            log.warning("%s: failed, not sent: %s", recipient.address, err)
            journal.mark(batch, key, "failed", None, str(err), expect=TO_SEND)
            continue
        except ValueError as err:  # a message the email standards cannot express: a bug
            log.error("%s: could not compose the message", recipient.address, exc_info=True)
            journal.mark(batch, key, "failed", None, f"could not compose the message: {err}",
                         expect=TO_SEND)
            continue
        yield done, recipient, rendered, data
        del data


class Lookahead:
    """Messages composed ahead of the sender: the next one, so that its envelope can go out
    with the current message's end, and, while the server answers, the one after it.

    ``compose_ahead`` runs inside the transport while it waits for the server, so an error
    there is held and raised by the ``take`` that reaches it, outside the transaction (where
    it would read as a failure of the message in flight). Memory: besides the message being
    sent, at most two of up to LOOKAHEAD bytes, or one larger one.
    """

    def __init__(self, messages: Iterator[Composed], sender: str = "") -> None:
        self._messages = messages
        self._sender = sender
        self._queue: deque[Composed | Exception] = deque()
        self._ended = False

    def _fetch(self) -> None:
        if self._ended:
            return
        try:
            item: Composed | Exception | None = next(self._messages, None)
        except Exception as err:
            item = err
        if item is None:
            self._ended = True
        else:
            self._queue.append(item)

    def take(self) -> Composed | None:
        if not self._queue:
            self._fetch()
        if not self._queue:
            return None
        item = self._queue.popleft()
        if isinstance(item, Exception):
            raise item
        return item

    def next_envelope(self) -> Envelope | None:
        """The envelope of the message ``take`` will return next (composed now if need be)."""
        if not self._queue:
            self._fetch()
        if not self._queue or isinstance(self._queue[0], Exception):
            return None
        _, _, rendered, data = self._queue[0]
        return Envelope(self._sender, tuple(rendered.envelope_recipients), len(data))

    def compose_ahead(self) -> None:
        """While the server answers: compose the message after the next, unless the next is
        large (memory stays one large message) or already followed."""
        if len(self._queue) == 1 and not isinstance(self._queue[0], Exception) and \
                len(self._queue[0][3]) <= LOOKAHEAD:
            self._fetch()
