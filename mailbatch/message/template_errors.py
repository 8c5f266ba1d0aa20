"""What went wrong in a template, said as ``template line N: problem``: for errors raised while
rendering (1 // 0 with a count of 0, a bound, a render over its time budget), which Jinja
reports as Python exceptions with the template's frames in their traceback."""

from __future__ import annotations

import os
import traceback

from mailbatch.message.sandbox import BoundExceeded, BudgetExceeded

__all__ = ["problem_in_template", "unencodable"]


def problem_in_template(err: BaseException, budget: float = 0.0) -> str:
    """``NAME line N: what happened``, NAME being the template (``subject``, a file)."""
    where = _template_line(err)
    if isinstance(err, BudgetExceeded):
        what = (f"took longer than {budget:g} seconds to render (a loop that does not end?); "
                "rendering stopped here")
    elif isinstance(err, RecursionError):
        what = "calls nested too deep (a macro that calls itself without end?)"
    elif isinstance(err, MemoryError):
        what = "ran out of memory"
    elif isinstance(err, BoundExceeded):
        what = str(err)
    elif isinstance(err, UnicodeEncodeError):
        what = unencodable(err)
    elif isinstance(err, UnicodeDecodeError):  # a template included by a computed name
        what = (f"read bytes that are not UTF-8 ({err.reason} at byte {err.start + 1}); save "
                "the template it includes as UTF-8")
    else:
        what = f"{err} ({type(err).__name__})" if str(err) else type(err).__name__
    return f"{where}: {what}" if where else what


def _template_line(err: BaseException) -> str | None:
    """The innermost template frame of the traceback, as ``name line N``. Jinja rewrites the
    traceback of an Exception so that template frames carry the template's name and line; a
    BaseException is not rewritten, and its frames know their template."""
    found = None
    for frame, lineno in traceback.walk_tb(err.__traceback__):
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            name = template.filename or template.name or "template"
            found = f"{_short(name)} line {template.get_corresponding_lineno(lineno)}"
        elif "__jinja_exception__" in frame.f_globals:
            found = f"{_short(frame.f_code.co_filename)} line {lineno}"
    return found


def _short(name: str) -> str:
    """A template file's path relative to the working folder, if it is inside it."""
    if os.path.isabs(name):
        relative = os.path.relpath(name)
        return name if relative.startswith("..") else relative
    return name


def unencodable(err: UnicodeEncodeError) -> str:
    """What a UnicodeEncodeError means for a message: data holding a lone surrogate."""
    return (f"the data contains {err.object[err.start:err.end]!r}, which is not a valid "
            "character (a lone surrogate, as JSON's \\ud800 makes); correct the data")
