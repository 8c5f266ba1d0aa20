"""The render worker: a second interpreter that renders chunks of recipients for the pool
(renderpool.py), and the framed pipes between the two.

It is a new interpreter (``python -m mailbatch.message.renderworker``) talking pickle over its
stdin and stdout: not a fork (the scheduler runs jobs on threads, and forking a threaded
process is unsafe) and not multiprocessing's spawn (which runs the caller's main script again,
a surprise for scripts that embed mailbatch). It builds its own Renderer from the same job and
clock and sends its fingerprint with every reply, so the pool can tell whether both rendered
from exactly the same templates and data.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import site
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from mailbatch.job.model import Job
from mailbatch.job.recipients import Recipient
from mailbatch.message.proof import prove
from mailbatch.message.render import Rendered, Renderer, RenderFailure

__all__ = ["Stop", "Worker", "render_all"]


class Stop(str):
    """A failure that stops the render pass (a message over its time budget): returned in
    place of a message, and nothing after it is rendered."""

    __slots__ = ()


def render_all(renderer: Renderer, recipients: list[Recipient]) -> Iterator[Rendered | str]:
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


class Worker:
    """The worker process and its two pipes. Each message is a pickle after a header (a mark
    and its length), so the parent can see that a reply has arrived (select) and read
    exactly that reply, in its own thread: no thread competes with the render for the GIL
    (a reader thread did, and each reply then took some 40 ms to cross).

    The parent never waits to write while the worker waits to write (two chunks in flight,
    and a request or a reply can be larger than a pipe holds): while its request does not
    fit, it reads what the worker sends meanwhile and keeps it for ``reply``."""

    def __init__(self, setup: tuple[Job, object, str, str]) -> None:
        env = dict(os.environ)
        root = Path(__file__).resolve().parents[2]  # the folder that holds mailbatch/
        if root not in {Path(p).resolve() for p in site.getsitepackages()}:
            # A source checkout: the worker must import this same code, not another copy.
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root),
                                                              env.get("PYTHONPATH")]))
        self.ready = False  # it has built its Renderer and said so
        self._kept: deque[Any] = deque()  # replies read while a request was being written
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailbatch.message.renderworker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, bufsize=0)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._requests, self._replies = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        for fd in (self._requests, self._replies):
            _widen(fd)
        os.set_blocking(self._requests, False)
        try:
            self.send(setup)
        except BaseException:
            self.close()  # no process left behind
            raise

    def send(self, item: Any) -> None:
        view = memoryview(_frame(item))
        while view:
            try:
                view = view[os.write(self._requests, view):]
                continue
            except BlockingIOError:  # the pipe is full: the worker is busy, or writing
                pass
            readable, _, _ = select.select([self._replies], [self._requests], [])
            if readable:
                self._kept.append(_read_frame(self._replies))

    def replied(self) -> bool:
        """Whether a reply is there to read (never waits)."""
        return bool(self._kept or select.select([self._replies], [], [], 0)[0])

    def reply(self) -> Any:
        return self._kept.popleft() if self._kept else _read_frame(self._replies)

    def close(self) -> None:
        """Stop it and reap it. Nothing it could still send is needed: the pool closes it
        once every reply was read, or when the pass is over anyway. (Letting it end by
        itself would cost the parent the worker's interpreter shutdown, some 30 ms.)"""
        with contextlib.suppress(OSError):  # ended already
            self.proc.terminate()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


_HEADER = struct.Struct("<4sQ")
_MARK = b"mbw1"  # a header that does not start so is not one: the worker is given up
_PIPE_BYTES = 1024 * 1024  # a reply (50 messages: about 300 KB) fits: nobody waits to write


def _widen(fd: int) -> None:
    """Grow the pipe's buffer where the system allows (Linux; up to its pipe-max-size)."""
    setting = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if setting is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, setting, _PIPE_BYTES)


def _frame(item: Any) -> bytes:
    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(_MARK, len(data)) + data


def _write_frame(fd: int, item: Any) -> None:
    view = memoryview(_frame(item))
    while view:
        view = view[os.write(fd, view):]


def _read_frame(fd: int) -> Any:
    mark, length = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    if mark != _MARK:
        raise ValueError("the other process wrote something else than a message")
    return pickle.loads(_read_exactly(fd, length))


def _read_exactly(fd: int, size: int) -> bytearray:
    data = bytearray(size)
    view, done = memoryview(data), 0
    while done < size:
        got = os.readv(fd, [view[done:]])
        if not got:
            raise EOFError("the other process ended")
        done += got
    return data


def _serve(requests: int, replies: int) -> None:
    """The worker: a Renderer for the job, then one reply per chunk until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    job, now, salt, scratch = _read_frame(requests)
    renderer = Renderer(job, now, message_id_salt=salt, scratch=scratch)
    _write_frame(replies, (renderer.fingerprint, None))  # ready
    while True:
        try:
            recipients = _read_frame(requests)
        except EOFError:
            return
        messages = list(render_all(renderer, recipients))
        # The charts this process claimed, drawn before the parent sees its messages.
        renderer.settle(own_only=True)
        _write_frame(replies, (renderer.fingerprint, messages))


if __name__ == "__main__":
    _serve(sys.stdin.fileno(), sys.stdout.fileno())
