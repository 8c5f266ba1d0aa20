"""Markdown bodies: the rendered Markdown becomes the HTML part and is itself the text part.

CommonMark with pipe tables and strikethrough, by markdown-it-py. Raw HTML in the Markdown is
shown as text, never passed through: recipient data in a Markdown body cannot add markup.
Without a job stylesheet the HTML gets ``DEFAULT_CSS``, a plain readable look.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["DEFAULT_CSS", "to_html", "to_text"]

DEFAULT_CSS = """\
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; font-size: 15px;
  line-height: 1.5; color: #1f2937; }
h1 { font-size: 22px; margin: 0 0 12px; }
h2 { font-size: 18px; margin: 20px 0 8px; }
h3 { font-size: 16px; margin: 16px 0 6px; }
p, ul, ol { margin: 0 0 12px; }
a { color: #2563eb; }
table { border-collapse: collapse; margin: 0 0 16px; }
th, td { padding: 6px 10px; border-bottom: 1px solid #e5e7eb; }
th { background: #f3f4f6; text-align: left; }
code { font-family: Menlo, Consolas, monospace; font-size: 13px; background: #f3f4f6; }
blockquote { margin: 0 0 12px; padding-left: 12px; border-left: 3px solid #d1d5db;
  color: #4b5563; }
img { max-width: 100%; }
"""

_parser: Any = None
_CID_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(\s*<?cid:[^)\s>]*>?(?:\s+\"[^\"]*\")?\s*\)")


def _markdown_it() -> Any:
    global _parser
    if _parser is None:
        from markdown_it import MarkdownIt

        _parser = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    return _parser


def to_html(source: str) -> str:
    """The Markdown as a complete HTML document (the stylesheet is added by css.py)."""
    body = _markdown_it().render(source)
    return ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"</head>\n<body>\n{body}</body>\n</html>\n")


def to_text(source: str) -> str:
    """The text part: the Markdown as written, with an image shown inline in the HTML
    (``![Sales](cid:...)``) reduced to its description, ``[Sales]``."""
    if "cid:" not in source:
        return source
    return _CID_IMAGE.sub(lambda m: f"[{m[1] or 'image'}]", source)
