"""Templates run in Jinja's sandbox, within bounds: the job's author is trusted to send mail,
not to hang cron or exhaust the machine by a typo.

- ``range`` has at most 100,000 items (the sandbox's own rule);
- calls (macros calling themselves, ``caller()``) nest at most ``MAX_CALL_DEPTH`` deep;
- ``*`` and ``**``, ``center``, ``indent`` and str methods such as ``ljust`` refuse to build a
  value of more than ``MAX_TEXT`` characters (or an integer of more than ``MAX_INT_BITS`` bits);
- one template's output is at most ``MAX_TEXT`` characters;
- one message renders within ``RENDER_SECONDS`` (``Budget``), or is interrupted.

Each bound raises an error inside the template, which the renderer reports as a render
failure naming the recipient and the template line.
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
import types
from collections.abc import Callable, Iterable
from typing import Any

import jinja2
from jinja2.filters import do_center, do_indent
from jinja2.runtime import LoopContext
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["MAX_CALL_DEPTH", "MAX_TEXT", "RENDER_SECONDS", "BoundExceeded", "BoundedEnvironment",
           "Budget",
           "BudgetExceeded"]

MAX_CALL_DEPTH = 50
MAX_TEXT = 50_000_000  # characters in one value or one template's output
MAX_INT_BITS = 100_000  # about 30,000 digits: more than any report needs
RENDER_SECONDS = 5.0  # a message renders in about a millisecond; a report with big tables in 0.1 s


class BoundExceeded(Exception):
    """Raised inside a template that would build something too large or recurse too deep."""


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


def _repeat(left: Any, right: Any) -> Any:
    """``*``: numbers multiply; a text or list repeated must stay within MAX_TEXT."""
    for seq, count in ((left, right), (right, left)):
        size = _size(seq)
        if size is not None and isinstance(count, int) and size * count > MAX_TEXT:
            raise BoundExceeded(f"repeating a value {count:,} times would make more than "
                                f"{MAX_TEXT:,} items")
    return left * right


def _power(left: Any, right: Any) -> Any:
    """``**``: an integer result of at most MAX_INT_BITS bits."""
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1 and \
            right * math.log2(abs(left)) > MAX_INT_BITS:
        raise BoundExceeded(f"{left} ** {right} is too large a number")
    return left**right


def _width_bound(function: Callable[..., Any], what: str) -> Callable[..., Any]:
    def bounded(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int) and width > MAX_TEXT:
            raise BoundExceeded(f"{what} width {width:,} is over {MAX_TEXT:,}")
        return function(value, width, *args, **kwargs)
    return bounded


def _concat(pieces: Iterable[str]) -> str:
    text = "".join(pieces)
    if len(text) > MAX_TEXT:
        raise BoundExceeded(f"the template's output is over {MAX_TEXT:,} characters")
    return text


class BoundedEnvironment(SandboxedEnvironment):
    """The sandbox with the bounds above (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**"})
    concat = staticmethod(_concat)  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.binop_table = {**self.binop_table, "*": _repeat, "**": _power}
        self.filters["center"] = _width_bound(do_center, "center")
        self.filters["indent"] = _width_bound(do_indent, "indent")
        self._depth = 0

    def getattr(self, obj: Any, attribute: str) -> Any:
        # ``loop.index`` and the like: Jinja's own object, every public attribute safe; the
        # sandbox's general check cost a fifth of the render time of a report with a table.
        if type(obj) is LoopContext and attribute[:1] != "_":
            try:
                return getattr(obj, attribute)
            except AttributeError:
                pass
        return super().getattr(obj, attribute)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any,
             *args: Any, **kwargs: Any) -> Any:
        owner = type(getattr(__obj, "__self__", None))
        if owner is LoopContext:  # loop.cycle(...), loop.changed(...): safe, and frequent
            return __context.call(__obj, *args, **kwargs)
        if owner is str and isinstance(__obj, types.BuiltinMethodType):
            for arg in (*args, *kwargs.values()):  # "x".ljust(10**9), "x".zfill(...)
                if isinstance(arg, int) and arg > MAX_TEXT:
                    raise BoundExceeded(f"{arg:,} is too large an argument for "
                                        f"{__obj.__name__}()")
        if __self._depth >= MAX_CALL_DEPTH:
            raise BoundExceeded(f"calls nested more than {MAX_CALL_DEPTH} deep (a macro that "
                                "calls itself without end?)")
        __self._depth += 1
        try:
            return super().call(__context, __obj, *args, **kwargs)
        finally:
            __self._depth -= 1


# -- the time budget -----------------------------------------------------------------------

class BudgetExceeded(BaseException):
    """Raised in a thread whose render ran past its budget. Not an Exception (like
    KeyboardInterrupt), so nothing on the way catches it by accident."""


def _set_async_exc(thread: int, exception: type[BaseException] | None) -> None:
    """Raise ``exception`` in ``thread`` at its next bytecode; None clears a pending one."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread), None if exception is None else ctypes.py_object(exception))


class Budget:
    """``with budget:`` around one message's rendering: if it runs past ``seconds``, a
    watchdog thread raises BudgetExceeded in the rendering thread (a loop in a template has
    no other place to be stopped; a signal would work in the main thread only, and the
    scheduler renders in threads). The watchdog runs while renders happen and then ends."""

    def __init__(self, seconds: float = RENDER_SECONDS) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._thread = 0  # the rendering thread, while one renders
        self._deadline = 0.0
        self._fired = False
        self._last = 0.0  # when a render last began: an idle watchdog ends
        self._watchdog: threading.Thread | None = None

    def __enter__(self) -> Budget:
        now = time.monotonic()
        with self._lock:
            self._thread = threading.get_ident()
            self._deadline = now + self.seconds
            self._fired = False
            self._last = now
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, daemon=True,
                                                  name="mailbatch-render-budget")
                self._watchdog.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            fired, self._thread = self._fired, 0
            if fired:  # raised already, or still pending: clear it, raise it here
                _set_async_exc(threading.get_ident(), None)
        if fired and exc[0] is None:
            raise BudgetExceeded

    def _watch(self) -> None:
        tick = min(0.25, self.seconds / 4)
        while True:
            time.sleep(tick)
            with self._lock:
                now = time.monotonic()
                if self._thread and not self._fired and now > self._deadline:
                    self._fired = True
                    _set_async_exc(self._thread, BudgetExceeded)
                elif not self._thread and now - self._last > 2.0:
                    self._watchdog = None  # idle: the next render starts another
                    return

