"""Progress of a batch: a bar on a terminal, plain log lines (timestamped by the CLI) elsewhere.

Both are ``RunOptions.progress`` callbacks, called by the runner after each message as
``progress(done, total, address, outcome)``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TextIO

from mailbatch.batch.sending import WARNED
from mailbatch.smtp.transport import Outcome

__all__ = ["Bar", "LogLines", "choose"]

log = logging.getLogger(__name__)


class LogLines:
    """One INFO line per message (shown with ``-v``), for cron mail and log files; a problem
    is already a warning line of its own, so it is not said twice."""

    def __call__(self, done: int, total: int, address: str, outcome: Outcome) -> None:
        if outcome.status in WARNED:
            return
        code = f" {outcome.code}" if outcome.code else ""
        log.info("[%d/%d] %s: %s%s %s", done, total, address, outcome.status, code,
                 outcome.message)

    def close(self) -> None:
        pass


class Bar:
    """A one-line bar redrawn in place on a terminal, at most every ``interval`` seconds.

    Log records written to the same terminal clear the line first (see ``attach``), so a
    warning never ends up glued to the bar.
    """

    def __init__(self, stream: TextIO, *, width: int = 30, interval: float = 0.1,
                 clock: Callable[[], float] = time.monotonic, plain: bool = False) -> None:
        self.stream = stream
        self.plain = plain  # no escape sequences (NO_COLOR): the line is cleared with spaces
        self._drawn = 0  # characters on the line now
        self.width = width
        self.interval = interval
        self.clock = clock
        self.counts: dict[str, int] = {}
        self._later: set[str] = set()  # addresses set aside, to be retried in this run
        self._last_draw: float | None = None
        self._shown = False
        self._filters: list[tuple[logging.Handler, logging.Filter]] = []

    def __call__(self, done: int, total: int, address: str, outcome: Outcome) -> None:
        # A message set aside by a 4xx ("later") is reported again when it is settled.
        if address in self._later:
            self._later.discard(address)
            self._count("retrying", -1)
        if outcome.status == "later":
            self._later.add(address)
            self._count("retrying", 1)
        else:
            self._count(outcome.status, 1)
        now = self.clock()
        last = done >= total
        if not last and self._last_draw is not None and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        line = self.line(done, total)
        self.stream.write(self._erase() + line)
        self.stream.flush()
        self._shown, self._drawn = True, len(line)

    def _count(self, status: str, change: int) -> None:
        self.counts[status] = self.counts.get(status, 0) + change
        if not self.counts[status]:
            del self.counts[status]

    def line(self, done: int, total: int) -> str:
        fraction = min(1.0, done / total) if total else 1.0
        filled = round(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items()))
        return f"[{bar}] {done}/{total} {fraction:4.0%}  {counts}"

    def clear(self) -> None:
        """Erase the bar so other output starts at the beginning of a clean line."""
        if self._shown:
            self.stream.write(self._erase())
            self.stream.flush()
            self._shown, self._drawn = False, 0
            self._last_draw = None  # redraw at the next message

    def _erase(self) -> str:
        """Back to the start of an empty line: an ANSI erase, or spaces over the old text."""
        if not self.plain:
            return "\r\x1b[K"
        return "\r" + " " * self._drawn + "\r" if self._drawn else "\r"

    def attach(self, logger: logging.Logger) -> Bar:
        """Clear the bar before any of ``logger``'s handlers writes a record."""
        bar = self

        class _ClearFirst(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                bar.clear()
                return True

        for handler in logger.handlers:
            clear_first = _ClearFirst()
            handler.addFilter(clear_first)
            self._filters.append((handler, clear_first))
        return self

    def close(self) -> None:
        """End the bar's line (it stays visible) and stop watching the log handlers."""
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
        for handler, clear_first in self._filters:
            handler.removeFilter(clear_first)
        self._filters.clear()


def choose(stream: TextIO, *, quiet: bool, verbose: int, debug: bool = False,
           logger: logging.Logger | None = None) -> Bar | LogLines | None:
    """The progress display for these options: none with ``-q``; log lines with ``-v``,
    ``--debug-smtp``, when ``stream`` is not a terminal or the terminal is ``TERM=dumb``;
    otherwise a bar, drawn without escape sequences when ``NO_COLOR`` is set."""
    if quiet:
        return None
    if verbose or debug or not stream.isatty() or os.environ.get("TERM") == "dumb":
        return LogLines()
    bar = Bar(stream, plain=bool(os.environ.get("NO_COLOR")))
    return bar.attach(logger) if logger is not None else bar
