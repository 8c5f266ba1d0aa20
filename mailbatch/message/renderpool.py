"""The render pass on two cores: a worker process renders every other chunk of recipients.

Every message is rendered before the first is sent, and Jinja is the largest cost of that
pass; the mail server is idle meanwhile. Results come back in list order, exactly as if one
process had rendered them. The worker is a new interpreter (``python -m
mailbatch.message.renderpool``) talking pickle over its stdin and stdout: not a fork (the scheduler
runs jobs on threads, and forking a threaded process is unsafe) and not multiprocessing's
spawn (which runs the caller's main script again, a surprise for scripts that embed
mailbatch). It starts only for batches of several chunks and only where a second core is
free, and builds its own Renderer from the same job and clock; if that does not render from
exactly the same templates and data (a file changed in between), or the worker dies, the
parent renders the rest itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import site
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from mailbatch.job.model import Job
from mailbatch.job.recipients import Recipient
from mailbatch.message.proof import prove
from mailbatch.message.render import Rendered, Renderer, RenderFailure

__all__ = ["CHUNK", "RenderPool", "Result", "Stop"]

log = logging.getLogger(__name__)

CHUNK = 200  # recipients per chunk: large enough to amortise a round trip to the worker
START_AFTER = 3  # chunks rendered here before a worker is worth its start-up (~0.3 s)
Result = tuple[Recipient, "Rendered | str", bool]  # (recipient, message or failure, keep)


class RenderPool:
    """``add`` recipients in list order; each call returns the results finished so far, in
    that order; ``finish`` returns the rest. ``keep`` travels with each recipient unchanged."""

    def __init__(self, renderer: Renderer, *, worker: bool | None = None) -> None:
        self.renderer = renderer
        self._chunk: list[tuple[Recipient, bool]] = []
        self._chunks = 0
        self._usable = _second_core() if worker is None else worker
        self._worker: _Worker | None = None
        self._pending: list[tuple[Recipient, bool]] | None = None  # at the worker now
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
        self._chunk.append((recipient, keep))
        return self._until_stop(self._flush()) if len(self._chunk) >= CHUNK else []

    def finish(self) -> list[Result]:
        if self.stopped:
            return []
        results = self._flush() if self._chunk else []
        if self._pending is not None:
            results = self._collect() + results
        results = self._until_stop(results)
        if not self.stopped:  # a stopped pass fails anyway: no chart is waited for
            self.renderer.settle()  # every chart drawn before the pass is over
        return results

    def _until_stop(self, results: list[Result]) -> list[Result]:
        """The results up to the first Stop (included); after one, the pass renders no more."""
        for i, (_, message, _) in enumerate(results):
            if isinstance(message, Stop):
                self.stopped = True
                self._chunk = []
                self.close()
                return results[:i + 1]
        return results

    def _flush(self) -> list[Result]:
        chunk, self._chunk = self._chunk, []
        self._chunks += 1
        if self._pending is None and self._start_worker():
            assert self._worker is not None
            try:
                self._worker.submit([r for r, _ in chunk])
                self._pending = chunk
                return []
            except Exception as err:  # the worker is an optimisation: never fail the run
                self._give_up(err)
        local = self._render_here(chunk)  # meanwhile the worker renders the chunk before
        return (self._collect() if self._pending is not None else []) + local

    def _start_worker(self) -> bool:
        if self._worker is None and self._usable and self._chunks > START_AFTER:
            self._usable = False  # one attempt per pass
            r = self.renderer
            try:
                # The worker writes generated files (charts, CSV) to this process's scratch
                # folder, where each process finds what the other already made.
                self._worker = _Worker((r.job, r.now, r.message_id_salt, str(r.scratch.path)))
            except Exception as err:  # no processes left, say: render in this one
                log.debug("rendering in one process: %s", err)
        return self._worker is not None

    def _collect(self) -> list[Result]:
        """The worker's chunk, in order; rendered here instead if the worker failed."""
        assert self._pending is not None and self._worker is not None  # set together
        chunk, self._pending = self._pending, None
        try:
            fingerprint, messages = self._worker.result()
        except Exception as err:  # died, or sent what cannot be read: render it here
            self._give_up(err)
            return self._render_here(chunk)
        if fingerprint != self.renderer.fingerprint:
            log.warning("a template or data file changed while the batch was being "
                        "rendered; rendering every message from the version read first")
            self._give_up(None)
            return self._render_here(chunk)
        self.by_worker += len(messages)
        return [(r, m, keep) for (r, keep), m in zip(chunk, messages, strict=True)]

    def _give_up(self, err: BaseException | None) -> None:
        if err is not None:
            log.debug("render worker failed (%s); rendering in one process", err)
        self.close()

    def _render_here(self, chunk: list[tuple[Recipient, bool]]) -> list[Result]:
        messages = _render_all(self.renderer, [r for r, _ in chunk])
        return [(r, m, keep) for (r, keep), m in zip(chunk, messages, strict=True)]


def _second_core() -> bool:
    if not sys.executable:  # an embedded interpreter: no python to start
        return False
    try:
        return len(os.sched_getaffinity(0)) > 1
    except AttributeError:  # not Linux
        return (os.cpu_count() or 1) > 1


class Stop(str):
    """A failure that stops the render pass (a message over its time budget): returned in
    place of a message, and nothing after it is rendered."""

    __slots__ = ()


def _render_all(renderer: Renderer, recipients: list[Recipient]) -> Iterator[Rendered | str]:
    """Each recipient's message, rendered and proved (see proof.py), or its failure; after a
    Stop, the rest of the chunk is not rendered (the pool drops their results)."""
    stopped: Stop | None = None
    for recipient in recipients:
        if stopped is not None:
            yield stopped
            continue
        try:
            message = renderer.render(recipient)
            prove(message)
            yield message
        except RenderFailure as err:
            if err.stop:
                stopped = Stop(err)
                yield stopped
            else:
                yield str(err)


class _Worker:
    """The worker process and its two pipes; one chunk in flight at a time."""

    def __init__(self, setup: tuple[Job, object, str, str]) -> None:
        env = dict(os.environ)
        root = Path(__file__).resolve().parents[2]  # the folder that holds mailbatch/
        if root not in {Path(p).resolve() for p in site.getsitepackages()}:
            # A source checkout: the worker must import this same code, not another copy.
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root),
                                                              env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailbatch.message.renderpool"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        try:
            self.submit(setup)
        except BaseException:
            self.close()  # no process left behind
            raise

    def submit(self, item: Any) -> None:
        assert self.proc.stdin is not None
        pickle.dump(item, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.flush()

    def result(self) -> tuple[str, list[Rendered | str]]:
        return pickle.load(self.proc.stdout)  # type: ignore[no-any-return, arg-type]

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # a worker that died: nothing to flush
                    stream.close()
        try:
            self.proc.wait(timeout=5)  # stdin closed: it ends at once
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """The worker: a Renderer for the job, then one reply per chunk until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    job, now, salt, scratch = pickle.load(requests)
    renderer = Renderer(job, now, message_id_salt=salt, scratch=scratch)
    while True:
        try:
            recipients = pickle.load(requests)
        except EOFError:
            return
        messages = list(_render_all(renderer, recipients))
        # The charts this process claimed, drawn before the parent sees its messages.
        renderer.settle(own_only=True)
        pickle.dump((renderer.fingerprint, messages), replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
