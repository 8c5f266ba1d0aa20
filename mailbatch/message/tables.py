"""Report tables and numbers: the ``table``, ``number`` and ``where`` template filters.

``{{ rows | table(...) }}`` writes the same table three ways, by the body it is in: an HTML
table in the HTML body, aligned columns in the text body, a pipe table in a Markdown body
(which becomes an HTML table in the HTML part and stays readable in the text part). Numbers
are formatted as a report needs them: ``","`` thousands separators, fixed decimals
(``",.2f"``), percentages (``".1%"`` of a fraction, or ``"{:.1f} %"`` for a value that is
one already), right-aligned.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jinja2
from markupsafe import Markup, escape

__all__ = ["KINDS", "format_number", "install", "layout", "where"]

KINDS = ("html", "text", "markdown")


def format_number(value: Any, spec: str | None = None) -> str:
    """``value`` formatted by a format spec (``",.2f"``) or a format string (``"{:.1f} %"``).
    Text that reads as a number (CSV fields are text) is formatted as that number; other
    values are shown as they are. Without a spec: whole numbers ``1,234``, others ``1,234.50``."""
    number = _as_number(value)
    if number is None:
        return "" if value is None else str(value)
    return _format(number, spec)


def _format(number: int | float, spec: str | None) -> str:
    if spec is None:
        spec = ",d" if isinstance(number, int) else ",.2f"
    try:
        if "{" in spec:
            return spec.format(number)
        if isinstance(number, int) and spec[-1:] not in ("d", "n", "x", "X", "o", "b", "c"):
            number = float(number)
        elif isinstance(number, float) and spec[-1:] in ("d", "n"):
            number = round(number)
        return format(number, spec)
    except (ValueError, IndexError, KeyError) as err:
        raise jinja2.TemplateRuntimeError(f"number format {spec!r}: {err}") from None


def _like(total: int | float, written: list[str]) -> str:
    """The total of numbers shown as the data wrote them, written the same way: as many
    decimals as the most precise of them, no thousands separator (``25.5 + 12 -> 37.5``)."""
    decimals = max((len(s.strip().partition(".")[2]) for s in written
                    if "e" not in s.lower()), default=0)
    return f"{total:.{decimals}f}"


def _as_number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value if not (isinstance(value, float) and not math.isfinite(value)) else None
    if isinstance(value, str):
        text = value.strip().replace(",", "")
        if not text or text.lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
            return None
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return None
    return None


def where(rows: Any, **conditions: Any) -> list[Any]:
    """The rows whose fields equal the given values: ``data.sales | where(region=region)``.
    A field and a value compare equal also as text (a CSV's "3" matches a number 3)."""
    if not conditions:
        raise jinja2.TemplateRuntimeError("where() needs at least one field=value")
    kept = []
    for row in _rows(rows, "where"):
        if not isinstance(row, Mapping):
            raise jinja2.TemplateRuntimeError("where() needs rows that are mappings of fields")
        if all(field in row and (row[field] == value or str(row[field]) == str(value))
               for field, value in conditions.items()):
            kept.append(row)
    return kept


def _rows(rows: Any, name: str) -> list[Any]:
    if isinstance(rows, str | bytes) or rows is None or isinstance(rows, jinja2.Undefined):
        raise jinja2.TemplateRuntimeError(f"{name}() needs a list of rows, not "
                                          f"{type(rows).__name__}")
    if isinstance(rows, Mapping):
        raise jinja2.TemplateRuntimeError(f"{name}() needs a list of rows, not a mapping (for "
                                          "its pairs, write mapping.items() | list)")
    try:
        return list(rows)
    except TypeError:
        raise jinja2.TemplateRuntimeError(f"{name}() needs a list of rows, not "
                                          f"{type(rows).__name__}") from None


def layout(rows: Any, columns: Sequence[str] | None = None,
           labels: Mapping[str, str] | None = None, formats: Mapping[str, str] | None = None,
           totals: Iterable[str] = (), total_label: str = "Total",
           ) -> tuple[list[str] | None, list[list[str]], list[str] | None, list[bool]]:
    """(header or None, body rows, totals row or None, right-aligned per column), all as
    text. Rows of lists have a header only when ``columns`` names them."""
    rows = _rows(rows, "table")
    mapped = all(isinstance(row, Mapping) for row in rows)
    if not mapped and not all(isinstance(row, list | tuple) for row in rows):
        raise jinja2.TemplateRuntimeError("table() needs rows that are all mappings of fields "
                                          "or all lists of values")
    headed = mapped or columns is not None
    if columns is None:
        columns = list(rows[0]) if mapped and rows else \
            [str(i) for i in range(max((len(r) for r in rows), default=0))]
    columns = [str(c) for c in columns]
    labels = labels or {}
    formats = formats or {}
    totals = set(totals)
    unknown = totals - set(columns)
    if unknown:
        raise jinja2.TemplateRuntimeError(f"table() totals names {sorted(unknown)[0]!r}, "
                                          "which is not one of its columns")

    def cell(row: Any, i: int, column: str) -> Any:
        if mapped:
            return row.get(column)
        return row[i] if i < len(row) else None

    raw = [[cell(row, i, c) for i, c in enumerate(columns)] for row in rows]
    body: list[list[str]] = [[] for _ in raw]
    numeric: list[bool] = []
    footer: list[str] | None = [] if totals else None
    for i, column in enumerate(columns):
        values = [r[i] for r in raw]
        numbers = [_as_number(v) for v in values]  # each cell parsed once
        right = any(n is not None for n in numbers) and all(
            n is not None or v is None or v == "" for v, n in zip(values, numbers, strict=True))
        numeric.append(right)
        spec = formats.get(column)
        as_written: list[str] = []  # numbers shown as the data wrote them ("25.5", "12")
        for shown, v, n in zip(body, values, numbers, strict=True):
            if v is None:
                shown.append("")
            elif n is not None and (spec is not None or (right and not isinstance(v, str))):
                shown.append(_format(n, spec))
            else:
                shown.append(str(v))
                if n is not None:
                    as_written.append(str(v))
        if footer is not None:
            total = sum(n for n in numbers if n is not None)
            footer.append((_format(total, spec) if spec is not None or not as_written
                           else _like(total, as_written)) if column in totals else "")
    header = [str(labels.get(c, c.replace("_", " ").capitalize() if mapped else c))
              for c in columns] if headed else None
    if footer and not footer[0]:
        footer[0] = total_label
    return header, body, footer, numeric


def html_table(rows: Any, **options: Any) -> Markup:
    header, body, footer, numeric = layout(rows, **options)
    if not numeric:  # no columns at all
        return Markup("")

    def row(cells: list[str], tag: str, label: bool = False) -> str:
        return "<tr>" + "".join(
            f'<{tag} align="{"right" if numeric[i] and not (label and i == 0) else "left"}">'
            f"{escape(text)}</{tag}>" for i, text in enumerate(cells)) + "</tr>"

    parts = ['<table class="report-table" cellpadding="6" cellspacing="0" border="0">',
             *(["<thead>", row(header, "th"), "</thead>"] if header is not None else []),
             "<tbody>", *(row(cells, "td") for cells in body), "</tbody>"]
    if footer is not None:
        parts += ["<tfoot>", row(footer, "th", label=_as_number(footer[0]) is None), "</tfoot>"]
    parts.append("</table>")
    return Markup("\n".join(parts))


def text_table(rows: Any, **options: Any) -> str:
    header, body, footer, numeric = layout(rows, **options)
    if not numeric:
        return ""
    every = [[" ".join(c.splitlines()) for c in r]  # one line per row, whatever the data
             for r in [*([header] if header else []), *body, *([footer] if footer else [])]]
    widths = [max((len(r[i]) for r in every), default=0) for i in range(len(numeric))]

    def line(cells: list[str], label: bool = False) -> str:
        return "  ".join(c.rjust(w) if numeric[i] and not (label and i == 0) else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    rows = iter(every)
    lines = [*([line(next(rows)), rule] if header is not None else []),
             *(line(next(rows)) for _ in body)]
    if footer is not None:
        lines += [rule, line(next(rows), label=_as_number(footer[0]) is None)]
    return "\n".join(lines)


# What would change a cell's meaning in Markdown: the cell separator, a backslash, code
# spans, links and autolinks, entity references, emphasis and strikethrough (an underscore
# only where it can open or close one).
_MARKDOWN = re.compile(r"[\\|`*\[\]<&~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def markdown_table(rows: Any, **options: Any) -> str:
    header, body, footer, numeric = layout(rows, **options)
    if not numeric:
        return ""
    every = [header or [""] * len(numeric), *body, *([footer] if footer else [])]
    cells = [[" ".join(_MARKDOWN.sub(r"\\\g<0>", c).splitlines()) or " " for c in r]
             for r in every]
    widths = [max(3, *(len(r[i]) for r in cells)) for i in range(len(numeric))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if numeric[i] else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(row, widths, strict=True))) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if numeric[i] else ("-" * (w + 2))
                          for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


_TABLES = {"html": html_table, "text": text_table, "markdown": markdown_table}
_REMEMBERED = 64  # tables kept per body kind: a batch has few distinct ones (one a region)


def _remembered(table: Any) -> Any:
    """``table`` with its recent results kept, by the repr of its input: recipients of one
    region show the same table, and laying one out costs more than rendering the rest of
    a report (a repr tells types apart: "1" and 1 and True differ)."""
    results: OrderedDict[str, Any] = OrderedDict()

    def remembered(rows: Any, **options: Any) -> Any:
        key = repr((rows, sorted(options.items())))
        result = results.get(key)
        if result is not None:
            results.move_to_end(key)
            return result
        result = table(rows, **options)
        if len(key) + len(result) < 1 << 20:
            results[key] = result
            if len(results) > _REMEMBERED:
                results.popitem(last=False)
        return result

    return remembered


def install(env: jinja2.Environment, kind: str) -> None:
    """Add the filters to a Jinja environment (any Environment class, sandboxed or not)."""
    env.filters["table"] = _remembered(_TABLES[kind])
    env.filters["number"] = format_number
    env.filters["where"] = where
