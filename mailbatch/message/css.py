"""CSS for mail clients: ``<style>`` rules (and the job's stylesheet) inlined into ``style=""``.

Outlook and several webmail clients ignore or strip ``<style>`` blocks; an inline ``style``
attribute they all honour. css-inline (Rust, MIT, no dependencies) does it in well under a
millisecond a message. ``@media`` rules cannot be inlined and stay in a ``<style>`` block
for the clients that honour them. Linked and remote stylesheets are never fetched: a message
is built from the job's own files only.
"""

from __future__ import annotations

import re
from typing import Any

from mailbatch.errors import JobError

__all__ = ["Styler"]

_STYLE_TAG = re.compile(r"<style[\s>]", re.IGNORECASE)
_HEAD = re.compile(r"<head(?:\s[^>]*)?>", re.IGNORECASE)
_HTML = re.compile(r"<html(?:\s[^>]*)?>", re.IGNORECASE)


class Styler:
    """Applies one job's CSS to each HTML body: inlined (the default), or, with
    ``inline_css: false``, only the job's stylesheet added as a ``<style>`` block."""

    def __init__(self, stylesheet: str | None, inline: bool, where: str) -> None:
        self.stylesheet = stylesheet or None
        self.inline = inline
        self.where = where
        self._inliner: Any = None  # made at the first HTML with something to inline

    def apply(self, html: str) -> str:
        """The HTML as it is sent. Untouched when there is nothing to do: no ``<style>``
        block and no job stylesheet (the inliner would only reformat it). Raises ValueError
        when the CSS cannot be inlined."""
        if self.inline:
            if self.stylesheet is None and not _STYLE_TAG.search(html):
                return html
            inliner = self._inliner or self._make_inliner()
            try:
                return str(inliner.inline(html))
            except (self._error, ValueError) as err:
                raise ValueError(f"cannot inline the CSS: {err}") from None
        if self.stylesheet is None:
            return html
        return add_style_block(html, self.stylesheet)

    def _make_inliner(self) -> Any:
        try:
            import css_inline
        except ImportError:  # a broken install: it is a dependency
            raise JobError("CSS inlining needs the css-inline package; reinstall mailbatch, "
                           "or set inline_css: false", path=self.where) from None
        self._error = css_inline.InlineError
        self._inliner = css_inline.CSSInliner(
            keep_at_rules=True, load_remote_stylesheets=False, extra_css=self.stylesheet)
        return self._inliner


def add_style_block(html: str, css: str) -> str:
    """``css`` as a ``<style>`` block at the start of the head (made if there is none)."""
    css = css.strip().replace("</", "<\\/")  # a stylesheet cannot end the block early
    block = f"<style>\n{css}\n</style>"
    head = _HEAD.search(html)
    if head:
        return html[:head.end()] + block + html[head.end():]
    start = _HTML.search(html)
    if start:
        return html[:start.end()] + f"<head>{block}</head>" + html[start.end():]
    return f"<head>{block}</head>" + html
