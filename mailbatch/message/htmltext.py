"""HTML to plain text, for the text part of a job that gives only HTML.

A message with only an HTML part reads badly in text-only clients and looks like spam to
filters (SpamAssassin's MIME_HTML_ONLY). The text made here keeps what a reader needs:
headings (underlined), paragraphs (wrapped at 76 columns), lists (``-`` or ``1.``), quotes
(``>``), links as ``text <url>``, image descriptions as ``[alt]``, and data tables as aligned
columns (numbers right-aligned). A table used for layout (its cells hold paragraphs, lists or
other tables) is read cell by cell instead. Standard library only (html2text is GPL-3).
"""

from __future__ import annotations

import re
import textwrap
from html.parser import HTMLParser

__all__ = ["html_to_text"]

WIDTH = 76
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "param", "source", "track", "wbr"})
_SKIP = frozenset({"head", "style", "script", "title", "template", "noscript"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_LAYOUT = _HEADINGS | {"p", "div", "table", "ul", "ol", "blockquote", "pre", "hr"}
_CLOSES_P = _LAYOUT | {"dl", "section", "article", "header", "footer"}
_BLOCK = _CLOSES_P | {"main", "nav", "aside", "center", "address", "figure", "figcaption",
                      "form", "fieldset", "dt", "dd", "li", "tr"}
_SPACE = re.compile(r"[ \t\n\r\f\v]+")
_BREAK = "\0"  # a <br> in gathered text (source line breaks are only spaces)
_NUMBER = re.compile("[-+\u2212]?" r"[$€£¥]?\s?[\d.,']*\d[\d.,']*\s?(?:%|[kKmMbB]|[$€£¥])?")


class _Node:
    __slots__ = ("attrs", "children", "tag")

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[_Node | str] = []


class _TreeBuilder(HTMLParser):
    """A forgiving tree: unclosed p, li, tr, td and th end where HTML says they end."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _Node("root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _CLOSES_P:
            self._close_open("p", stop={"td", "th", "li", "blockquote", "div"})
        if tag == "li":
            self._close_open("li", stop={"ul", "ol"})
        elif tag in ("td", "th"):
            self._close_open("td", "th", stop={"tr", "table"})
        elif tag == "tr":
            self._close_open("tr", stop={"table", "thead", "tbody", "tfoot"})
        elif tag in ("thead", "tbody", "tfoot"):
            self._close_open("thead", "tbody", "tfoot", stop={"table"})
        node = _Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self.stack[-1].tag == tag:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data.replace(_BREAK, ""))

    def _close_open(self, *tags: str, stop: set[str]) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            tag = self.stack[i].tag
            if tag in tags:
                del self.stack[i:]
                return
            if tag in stop:
                return


def html_to_text(html: str) -> str:
    """The text a reader of ``html`` needs, ending in a line break."""
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    lines = _Blocks().render(builder.root)
    return "\n".join(lines).strip("\n") + "\n"


class _Blocks:
    """Blocks of lines, separated by blank lines; inline text gathers until a block ends."""

    def __init__(self) -> None:
        self.blocks: list[list[str]] = []
        self.inline: list[str] = []

    def render(self, node: _Node) -> list[str]:
        self.walk(node)
        self.flush()
        out: list[str] = []
        for block in self.blocks:
            if out:
                out.append("")
            out.extend(block)
        return out

    def flush(self) -> None:
        text = "".join(self.inline)
        self.inline = []
        lines = []
        for line in text.split(_BREAK):
            line = _SPACE.sub(" ", line).strip().replace("\xa0", " ")
            if line:
                lines.extend(textwrap.wrap(line, WIDTH, break_long_words=False,
                                           break_on_hyphens=False))
        if lines:
            self.blocks.append(lines)

    def add_block(self, lines: list[str]) -> None:
        self.flush()
        if lines:
            self.blocks.append(lines)

    def walk(self, node: _Node) -> None:
        for child in node.children:
            if isinstance(child, str):
                self.inline.append(child)
            else:
                self.element(child)

    def element(self, node: _Node) -> None:
        tag = node.tag
        if tag in _SKIP:
            return
        if tag == "br":
            self.inline.append(_BREAK)
        elif tag == "img":
            alt = node.attrs.get("alt", "").strip()
            if alt:
                self.inline.append(f" [{alt}] ")
        elif tag == "a":
            self.link(node)
        elif tag in _HEADINGS:
            text = _inline_text(node)
            if text:
                rule = {"h1": "=", "h2": "-"}.get(tag)
                self.add_block([text, rule * min(len(text), WIDTH)] if rule else [text])
        elif tag in ("ul", "ol"):
            self.add_block(self.listing(node, tag == "ol"))
        elif tag == "blockquote":
            self.add_block(["> " + line if line else ">" for line in _Blocks().render(node)])
        elif tag == "pre":
            self.add_block(_text(node).strip("\n").split("\n"))
        elif tag == "hr":
            self.add_block(["-" * 40])
        elif tag == "table":
            self.table(node)
        elif tag in _BLOCK:
            self.flush()
            self.walk(node)
            self.flush()
        else:
            self.walk(node)

    def link(self, node: _Node) -> None:
        text = _inline_text(node)
        href = node.attrs.get("href", "").strip()
        shown = href[7:] if href.lower().startswith("mailto:") else href
        if not href or href.startswith("#") or href.lower().startswith(("cid:", "javascript:")):
            self.walk(node)
        elif not text or text in (shown, href):
            self.inline.append(shown)
        else:
            self.walk(node)
            self.inline.append(f" <{shown}>")

    def listing(self, node: _Node, ordered: bool) -> list[str]:
        lines: list[str] = []
        number = int(node.attrs.get("start", "1")) if node.attrs.get("start",
                                                                        "").isdigit() else 1
        for item in node.children:
            if isinstance(item, str) or item.tag != "li":
                continue
            marker = f"{number}. " if ordered else "- "
            number += 1
            inner = _Blocks().render(item) or [""]
            lines.append(marker + inner[0])
            lines.extend(" " * len(marker) + line if line else "" for line in inner[1:])
        return lines

    def table(self, node: _Node) -> None:
        rows = _rows(node)
        cells = [cell for row in rows for _, cell in row]
        if any(_contains(cell, _LAYOUT) for cell in cells):  # a layout table: read it
            for cell in cells:
                self.flush()
                self.walk(cell)
                self.flush()
            return
        self.add_block(_grid(rows))


def _rows(table: _Node) -> list[list[tuple[bool, _Node]]]:
    """The table's rows (through thead, tbody, tfoot), each [(is header, cell)]."""
    rows = []
    for child in table.children:
        if isinstance(child, str):
            continue
        if child.tag == "tr":
            rows.append(child)
        elif child.tag in ("thead", "tbody", "tfoot"):
            rows.extend(c for c in child.children if not isinstance(c, str) and c.tag == "tr")
    return [[(c.tag == "th", c) for c in row.children
             if not isinstance(c, str) and c.tag in ("td", "th")] for row in rows]


def _grid(rows: list[list[tuple[bool, _Node]]]) -> list[str]:
    table: list[list[str]] = []
    for row in rows:
        texts = []
        for _, cell in row:
            texts.append(_inline_text(cell).replace("\n", " "))
            span = cell.attrs.get("colspan", "1")
            texts.extend([""] * (int(span) - 1 if span.isdigit() and 1 < int(span) < 50 else 0))
        table.append(texts)
    table = [row for row in table if any(row)]
    if not table:
        return []
    columns = max(len(row) for row in table)
    table = [row + [""] * (columns - len(row)) for row in table]
    numeric = [all(not row[i] or _NUMBER.fullmatch(row[i]) for row in table[1:]) and
               any(row[i] for row in table[1:]) for i in range(columns)]
    widths = [max(len(row[i]) for row in table) for i in range(columns)]
    lines = ["  ".join(cell.rjust(w) if numeric[i] else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in table]
    header = rows and rows[0] and all(is_head for is_head, _ in rows[0])
    if header and len(lines) > 1:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _contains(node: _Node, tags: frozenset[str]) -> bool:
    return any(not isinstance(c, str) and (c.tag in tags or _contains(c, tags))
               for c in node.children)


def _text(node: _Node) -> str:
    """All the text under ``node``, as written (for pre)."""
    return "".join(c if isinstance(c, str) else
                   ("\n" if c.tag == "br" else "" if c.tag in _SKIP else _text(c))
                   for c in node.children)


def _inline_text(node: _Node) -> str:
    """The text under ``node`` on one line: whitespace collapsed, images as [alt]."""
    return " ".join(line for line in _Blocks().render(node) if line)
