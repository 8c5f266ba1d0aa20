"""The job keys that shape a report's content: styling, inline images, generated attachments.

``stylesheet``, ``inline_css``, ``inline_images``, ``zip_attachments`` and the generated
(``csv:``) entries of ``attachments``; model.py reads the rest of the job. Values stay as the
job wrote them (Jinja strings and expressions); the message layer compiles them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailbatch.job.fields import Section

__all__ = ["IMAGE_NAME", "ContentKeys", "GeneratedSpec", "generated_spec", "parse_content"]

# A name a template writes as ``cid:NAME``: what a URL and a Content-ID both carry as is.
IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class GeneratedSpec:
    """An attachment written per recipient instead of globbed: a CSV of rows."""

    csv: str  # a Jinja expression giving the rows, e.g. "data.sales | where(region=region)"
    filename: str  # a Jinja string, e.g. "sales-{{ region }}.csv"
    columns: tuple[str, ...] = ()  # which fields, in this order (default: the first row's)
    line: int | None = None


@dataclass(frozen=True)
class ContentKeys:
    stylesheet: Path | None = None
    inline_css: bool = True
    inline_images: tuple[tuple[str, str], ...] = ()  # (name, Jinja path under the root)
    zip_attachments: str | None = None  # a Jinja file name: one archive of all attachments


def parse_content(top: Section, base: Path) -> ContentKeys:
    """Read the content keys of the job's top level (each error at its file:line: key)."""
    stylesheet = top.path_("stylesheet", base)
    if stylesheet is not None and not stylesheet.is_file():
        raise top.error(f"stylesheet {stylesheet.name!r} not found (looked in "
                        f"{stylesheet.parent})", "stylesheet")
    images = top.sub("inline_images")
    named = []
    for name in list(images.mapping):
        if not IMAGE_NAME.fullmatch(name):
            raise images.error("an inline image name is what the HTML writes after cid: "
                               "(letters, digits, '.', '_', '-'), e.g. logo for "
                               '<img src="cid:logo">', name)
        named.append((name, images.text(name, required=True)))
    zip_name = top.text("zip_attachments")
    if zip_name is not None and not zip_name.strip():
        raise top.error("must be a file name such as 'reports-{{ region }}.zip'",
                        "zip_attachments")
    return ContentKeys(stylesheet=stylesheet, inline_css=top.get("inline_css", bool, True),
                       inline_images=tuple(named), zip_attachments=zip_name)


def generated_spec(sec: Section, line: int | None) -> GeneratedSpec:
    """An ``attachments`` entry with ``csv:`` (the rows) and ``filename:``."""
    expression = sec.text("csv", required=True).strip()
    if expression.startswith("{{") and expression.endswith("}}"):
        expression = expression[2:-2].strip()  # "{{ data.x }}" and "data.x" mean the same
    if not expression:
        raise sec.error("must be a Jinja expression giving the rows, e.g. "
                        "\"data.sales | where(region=region)\"", "csv")
    filename = sec.text("filename", required=True)
    columns: Any = sec.get("columns", list, [])
    if not all(isinstance(c, str | int) and str(c) for c in columns):
        raise sec.error("must be a list of field names", "columns")
    spec = GeneratedSpec(csv=expression, filename=filename,
                         columns=tuple(str(c) for c in columns), line=line)
    sec.done()
    return spec
