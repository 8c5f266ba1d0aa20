"""Templates run in Jinja's sandbox, within bounds: the job's author is trusted to send mail,
not to hang cron or exhaust the machine by a typo.

- ``range`` has at most 100,000 items (the sandbox's own rule);
- calls (macros calling themselves, ``caller()``) nest at most ``MAX_CALL_DEPTH`` deep;
- ``*`` and ``**``, ``center``, ``indent``, str methods such as ``ljust`` and the widths of
  format strings (``%``, ``|format``, ``.format``) refuse to build a value of more than
  ``MAX_TEXT`` characters (or an integer of more than ``MAX_INT_BITS`` bits);
- one template's output is at most ``MAX_TEXT`` characters;
- one message renders within ``RENDER_SECONDS`` (``Budget``), or is interrupted.

Each bound raises an error inside the template, which the renderer reports as a render
failure naming the recipient and the template line.
"""

from __future__ import annotations

import ctypes
import functools
import math
import re
import threading
import time
import types
from collections.abc import Callable, Iterable
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.filters import do_center, do_format, do_indent
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


_NUMBERS = frozenset({int, float})


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


def _repeat(left: Any, right: Any) -> Any:
    """``*``: numbers multiply; a text or list repeated must stay within MAX_TEXT."""
    if type(left) in _NUMBERS and type(right) in _NUMBERS:
        return left * right
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


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\d*)(?:\.(\d*))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*:([^{}]*)\}")
_NESTED_SPEC = re.compile(r"\{[^{}]*:[^{}]*\{")


def _check_format(text: Any, args: Any = ()) -> None:
    """A format string (``%``, ``|format``, ``.format``) whose widths would build a value over
    MAX_TEXT: ``"%1000000000d" % 1``, ``"{:>1000000000}".format(1)``, ``"%*d" % (10**9, 1)``."""
    if not isinstance(text, str) or ("%" not in text and "{" not in text):
        return
    too_wide, from_args = _widths(text) if len(text) <= 200 else _widths.__wrapped__(text)
    if too_wide or (from_args and any(
            isinstance(v, int) and v > MAX_TEXT
            for v in (args if isinstance(args, tuple | list) else (args,)))):
        raise BoundExceeded(f"a width in the format {text[:40]!r} is over {MAX_TEXT:,}")


@functools.lru_cache(maxsize=512)  # format strings are template literals: parsed once each
def _widths(text: str) -> tuple[bool, bool]:
    """(a width or precision written in ``text`` is over MAX_TEXT, a width comes from the
    arguments: ``%*d``, ``{0:{1}}``)."""
    numbers = [n for match in _PERCENT_SPEC.finditer(text) for n in match.groups() if n]
    numbers += [n for spec in _BRACE_SPEC.findall(text) for n in re.findall(r"\d+", spec)]
    too_wide = any(len(n) > 9 or int(n) > MAX_TEXT for n in numbers)
    return too_wide, "*" in text or bool(_NESTED_SPEC.search(text))


def _percent(left: Any, right: Any) -> Any:
    """``%``: numbers take the remainder; a format string's widths stay within MAX_TEXT."""
    if type(left) is str and (len(left) > 8 or "*" in left):
        _check_format(left, right)
    return left % right


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> Any:
    """``|format`` where the format is not written in the template (see ``_parse``)."""
    _check_format(value, args)
    return do_format(value, *args, **kwargs)


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

    intercepted_binops = frozenset({"*", "**", "%"})
    concat = staticmethod(_concat)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.binop_table = {**self.binop_table, "*": _repeat, "**": _power, "%": _percent}
        self.filters["bounded_format"] = _format_filter
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

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """The template's syntax tree, with ``|format`` checked: a format written in the
        template (``"%6d"|format(n)``, run for every row of a table) is checked once, here;
        any other goes through the checking filter when it runs."""
        tree = super()._parse(source, name, filename)
        for node in tree.find_all(nodes.Filter):
            if node.name != "format":
                continue
            if isinstance(node.node, nodes.Const) and not (
                    isinstance(node.node.value, str) and "*" in node.node.value):
                try:
                    _check_format(node.node.value)
                except BoundExceeded as err:
                    raise jinja2.TemplateSyntaxError(str(err), node.lineno, name,
                                                     filename) from None
            else:
                node.name = "bounded_format"
        return tree

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``"...".format(...)`` in a template: the sandbox's own, with its widths bounded."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = value.__self__

        def bounded(*args: Any, **kwargs: Any) -> str:
            _check_format(text, (*args, *kwargs.values()))
            return wrapped(*args, **kwargs)
        return bounded

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

