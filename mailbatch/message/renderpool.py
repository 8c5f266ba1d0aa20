"""The render pass on two cores: a worker process renders part of the recipients.

Every message is rendered before the first is sent, and Jinja is the largest cost of that
pass; the mail server is idle meanwhile. Results come back in list order, exactly as if one
process had rendered them. The worker (renderworker.py) starts once a batch has more than 200
recipients, where a second core is free; if it does not render from exactly the same
templates and data (a file changed in between), or it dies, this process renders the rest.

Neither process waits for the other while there is work: the parent renders a few recipients
at a time and, whenever the worker is free, hands it the next chunk of those not yet rendered
(keeping one chunk's worth in hand for it). So the parent renders alone until the worker has
started (about 0.15 s), then both render; at the end what is left is shared between them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque

from mailbatch.job.recipients import Recipient
from mailbatch.message.render import Rendered, Renderer
from mailbatch.message.renderworker import Stop, Worker, render_all

__all__ = ["CHUNK", "START_AT", "RenderPool", "Result", "Stop"]

log = logging.getLogger(__name__)

CHUNK = 50  # recipients the worker renders per request (20 ms): a round trip costs 0.5 ms
SLICE = 10  # recipients the parent renders between two looks at the worker
START_AT = 200  # recipients seen before a worker starts: a smaller batch is done before it is ready
IN_FLIGHT = 2  # chunks handed to the worker at a time: it never waits for the next
HELD = 600  # results kept back behind the worker's chunk before the parent waits for it
Result = tuple[Recipient, "Rendered | str", bool]  # (recipient, message or failure, keep)
Pending = list[tuple[Recipient, bool]]


class _Part:
    """Consecutive recipients and, once rendered (here or by the worker), their results."""

    __slots__ = ("chunk", "results")

    def __init__(self, chunk: Pending, results: list[Result] | None = None) -> None:
        self.chunk = chunk
        self.results = results  # None: at the worker


class RenderPool:
    """``add`` recipients in list order; each call returns the results finished so far, in
    that order; ``finish`` returns the rest. ``keep`` travels with each recipient unchanged.

    ``worker``: None decides by the batch and the machine; True always uses one (and waits
    for it to start before rendering: for tests), False never."""

    def __init__(self, renderer: Renderer, *, worker: bool | None = None) -> None:
        self.renderer = renderer
        self._usable = _second_core() if worker is None else worker
        self._patient = worker is True
        self._worker: Worker | None = None
        self._seen = 0
        self._waiting: Pending = []  # added, not yet rendered nor handed to the worker
        self._order: deque[_Part] = deque()  # rendered or at the worker, in list order
        self._at_worker: deque[_Part] = deque()  # handed to the worker, in that order
        self._taken_back = 0  # chunks taken back from the worker at the end (for tests)
        self.by_worker = 0  # messages the worker rendered (for tests and debugging)
        self.stopped = False  # a Stop was returned: add() and finish() render nothing more

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()
            log.debug("render worker rendered %d messages", self.by_worker)

    def add(self, recipient: Recipient, keep: bool = True) -> list[Result]:
        if self.stopped:
            return []
        self._waiting.append((recipient, keep))
        self._seen += 1
        if self._usable and self._seen > START_AT:
            self._start_worker()
        self._work(final=False)
        return self._release(wait=False)

    def finish(self) -> list[Result]:
        if self.stopped:
            return []
        self._work(final=True)
        results = self._release(wait=True)
        if not self.stopped:  # a stopped pass fails anyway: no chart is waited for
            self.renderer.settle()  # every chart drawn before the pass is over
        return results

    # -- who renders what --------------------------------------------------------------------

    def _work(self, final: bool) -> None:
        """Keep the worker supplied (a chunk in hand for it, two at most with it); render
        here what is beyond that; at the end, share what is left."""
        while True:
            worker = self._worker
            if worker is not None and (self._at_worker or not worker.ready):
                self._poll(wait=self._patient and not worker.ready)
            worker = self._worker
            ready = worker is not None and worker.ready
            if ready and len(self._at_worker) < IN_FLIGHT:
                queued = sum(len(part.chunk) for part in self._at_worker)
                count = _for_worker(len(self._waiting), queued, final)
                if count:
                    self._submit(count)
                    continue
            keep_back = CHUNK if ready and not final else 0
            if len(self._waiting) >= keep_back + SLICE or (final and self._waiting):
                chunk, self._waiting = self._waiting[:SLICE], self._waiting[SLICE:]
                self._order.append(_Part(chunk, self._render_here(chunk)))
                continue
            return

    def _release(self, wait: bool) -> list[Result]:
        """The results finished so far in list order (all of them with ``wait``): the
        worker's chunk is waited for at the end, or when too many results are held back
        behind it (memory stays bounded)."""
        results: list[Result] = []
        while self._order:
            part = self._order[0]
            if part.results is not None:
                self._order.popleft()
                results += part.results
            elif self._worker is None:  # gone without a reply: render its chunks here
                self._give_up(None)
            elif wait and len(self._at_worker) > 1 and not self._waiting:
                # Nothing left to render here: take back the last chunk it was given (it
                # has most likely not begun it), rather than wait for both.
                part = self._at_worker.pop()
                part.results = self._render_here(part.chunk)
                self._taken_back += 1
            elif wait or sum(len(p.results or ()) for p in self._order) >= HELD:
                self._poll(wait=True)
            else:
                break
        return self._until_stop(results)

    def _until_stop(self, results: list[Result]) -> list[Result]:
        """The results up to the first Stop (included); after one, the pass renders no more."""
        for i, (_, message, _) in enumerate(results):
            if isinstance(message, Stop):
                self.stopped = True
                self._waiting, self._order, self._at_worker = [], deque(), deque()
                self.close()
                return results[:i + 1]
        return results

    # -- the worker ----------------------------------------------------------------------------

    def _start_worker(self) -> None:
        if self._worker is not None or not self._usable:
            return
        self._usable = False  # one attempt per pass
        r = self.renderer
        try:
            # The worker writes generated files (charts, CSV) to this process's scratch
            # folder, where each process finds what the other already made.
            self._worker = Worker((r.job, r.now, r.message_id_salt, str(r.scratch.path)))
        except Exception as err:  # no processes left, say: render in this one
            log.debug("rendering in one process: %s", err)

    def _submit(self, count: int) -> None:
        assert self._worker is not None
        chunk, self._waiting = self._waiting[:count], self._waiting[count:]
        part = _Part(chunk)
        self._order.append(part)
        self._at_worker.append(part)
        try:
            self._worker.send([r for r, _ in chunk])
        except Exception as err:  # the worker is an optimisation: never fail the run
            self._give_up(err)

    def _poll(self, wait: bool) -> None:
        """Take one reply of the worker, if there is one (``wait``: wait for it): that it
        is ready, or the results of its oldest chunk."""
        worker = self._worker
        if worker is None or not (wait or worker.replied()):
            return
        try:
            fingerprint, messages = worker.reply()
        except Exception as err:  # it died, or sent what cannot be read
            self._give_up(err)
            return
        if fingerprint != self.renderer.fingerprint:
            log.warning("a template or data file changed while the batch was being "
                        "rendered; rendering every message from the version read first")
            self._give_up(None)
            return
        if messages is None:
            worker.ready = True
            return
        if not self._at_worker:  # the reply to a chunk taken back: rendered here already
            return
        part = self._at_worker.popleft()
        self.by_worker += len(messages)
        part.results = [(r, m, keep) for (r, keep), m in zip(part.chunk, messages, strict=True)]

    def _give_up(self, err: BaseException | None) -> None:
        """Render in this process from now on, the chunks the worker had included."""
        if err is not None:
            log.debug("render worker failed (%s); rendering in one process", err)
        self.close()
        while self._at_worker:
            part = self._at_worker.popleft()
            part.results = self._render_here(part.chunk)

    def _render_here(self, chunk: Pending) -> list[Result]:
        messages = render_all(self.renderer, [r for r, _ in chunk])
        return [(r, m, keep) for (r, keep), m in zip(chunk, messages, strict=True)]


def _for_worker(waiting: int, queued: int, final: bool) -> int:
    """How many of the waiting recipients to hand the worker, which has ``queued`` still to
    render: a chunk; at the end, what leaves both about as much to do, if worth a request."""
    if not final:
        return CHUNK if waiting >= CHUNK else 0
    share = min(CHUNK, (waiting - queued) // 2)
    return share if share >= SLICE else 0


def _second_core() -> bool:
    """Whether a worker can help: a second core, an interpreter to start, and pipes that
    select() can watch (not on Windows: there the pass renders in one process)."""
    if not sys.executable or os.name != "posix":
        return False
    try:
        return len(os.sched_getaffinity(0)) > 1
    except AttributeError:  # not Linux
        return (os.cpu_count() or 1) > 1


