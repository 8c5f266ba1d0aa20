"""A recipient's report content, wired for the Renderer: finished bodies and generated files.

The Renderer renders the job's templates; this module supplies what they call (tables,
numbers, images, charts) and finishes what they produce: Markdown into HTML, CSS inlined,
every ``cid:`` matched with an image, a text part made from the HTML when the job gave none,
CSV attachments written and attachments zipped. Each concern lives in its own module
(tables, inline, charts, css, markdown, htmltext, generated); this one only connects them.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2

from mailbatch.errors import JobError
from mailbatch.job.content import GeneratedSpec
from mailbatch.job.model import Job, TemplateSource
from mailbatch.message import charts, markdown, tables
from mailbatch.message.attachments import Attachment, AttachmentProblem, find
from mailbatch.message.css import Styler
from mailbatch.message.drawer import Drawer
from mailbatch.message.generated import Scratch, csv_bytes, zip_attachments
from mailbatch.message.inline import (
    ImageSet,
    InlineImage,
    inline_image,
    place_generated,
    safe_filename,
)

__all__ = ["Content", "Generator"]

Compile = Callable[[jinja2.Environment, TemplateSource], jinja2.Template]
Generator = Callable[[Mapping[str, Any]], Attachment]  # context -> a generated file


class Content:
    """One job's content helpers and finishing steps (one per Renderer)."""

    def __init__(self, job: Job, compile: Compile, envs: Mapping[str, jinja2.Environment],
                 root: Path, domain: str, scratch: Scratch) -> None:
        self.job = job
        self.root = root
        self.domain = domain
        self.scratch = scratch
        self._compile = compile
        self._text_env = envs["text"]
        keys = job.content
        stylesheet = None
        if keys.stylesheet is not None:
            try:
                stylesheet = keys.stylesheet.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise JobError(f"cannot read the stylesheet: {err}; save it as UTF-8 text",
                               path=str(keys.stylesheet)) from None
        elif job.markdown is not None:
            stylesheet = markdown.DEFAULT_CSS
        self.sources = [stylesheet or ""]  # for the Renderer's fingerprint
        self.styler = Styler(stylesheet, keys.inline_css, str(job.path))
        body = job.html or job.markdown
        self.body_name = body.name if body else ""
        template = str(body.path) if body and body.path else str(job.path)
        self.drawer = Drawer(scratch)  # started at the first chart not drawn before
        chart = charts.make_chart(scratch, self.drawer.request, place_generated, template)
        for kind, env in envs.items():
            tables.install(env, kind)
            env.globals["charts_available"] = charts.available()
            if kind == "text":
                env.globals["inline_image"] = env.globals["chart"] = _text_only
            else:
                env.globals["inline_image"] = inline_image
                env.globals["chart"] = chart
        self._named = {name: compile(self._text_env, TemplateSource(
            f"inline_images.{name}", text=path)) for name, path in keys.inline_images}
        self._zip = compile(self._text_env, TemplateSource(
            "zip_attachments", text=keys.zip_attachments)) if keys.zip_attachments else None

    # -- per recipient -------------------------------------------------------------------

    def images(self, context: Mapping[str, Any]) -> ImageSet:
        """The recipient's image set (used as ``with inline.collecting(...)``)."""
        def named(cid: str) -> InlineImage | None:
            template = self._named.get(cid)
            if template is None:
                return None
            path = template.render(context)
            found = find(glob.escape(path), self.root)
            if not found:
                raise AttachmentProblem(f"inline_images.{cid}: {path!r} not found under "
                                        f"{self.root}; add the file or correct the path")
            image = found[0]
            if not image.content_type.startswith("image/"):
                raise AttachmentProblem(f"inline_images.{cid}: {path!r} is "
                                        f"{image.content_type}, not an image")
            return InlineImage(image.path, safe_filename(image.filename), image.content_type,
                               image.size, cid)

        return ImageSet(self.root, self.domain, named)

    def finish(self, text: str | None, html: str | None, source: str | None,
               images: ImageSet) -> tuple[str | None, str | None, tuple[InlineImage, ...]]:
        """(text, html, inline images) as sent. ``source`` is the rendered Markdown, if the
        job's body is Markdown. Raises AttachmentProblem naming the body template."""
        if source is not None:
            html, text = markdown.to_html(source), markdown.to_text(source)
        if html is None:
            return text, None, ()
        plain = html
        try:
            html = self.styler.apply(html)
        except ValueError as err:
            raise AttachmentProblem(f"{self.body_name}: {err}") from None
        inline = images.resolve(html, self.body_name)
        if text is None:  # a text part always: clients and filters expect one
            from mailbatch.message.htmltext import html_to_text  # (html.parser: 5 ms to import)

            text = html_to_text(plain)
        return text, html, inline

    def settle(self, own_only: bool = False) -> None:
        """Wait until every chart of the messages rendered so far is drawn (RenderError if
        one cannot be); see Drawer.settle."""
        self.drawer.settle(own_only)

    def generator(self, index: int, spec: GeneratedSpec) -> Generator:
        """The attachment entry ``spec`` compiled: context -> the recipient's CSV file."""
        where = f"attachments[{index}]"
        try:
            rows = self._text_env.compile_expression(spec.csv, undefined_to_none=False)
        except jinja2.TemplateSyntaxError as err:
            raise JobError(f"template syntax error: {err.message}; fix the expression",
                           path=str(self.job.path), line=spec.line, field=f"{where}.csv"
                           ) from None
        name = self._compile(self._text_env, TemplateSource(f"{where}.filename",
                                                            text=spec.filename))

        def build(context: Mapping[str, Any]) -> Attachment:
            try:
                data = csv_bytes(rows(**context), spec.columns)
            except AttachmentProblem as err:
                raise AttachmentProblem(f"{where}: {err}") from None
            filename = _file_name(name.render(context), where)
            path = self.scratch.store(data, ".csv")
            return Attachment(path=path, filename=filename, content_type="text/csv",
                              size=len(data))

        return build

    def zipped(self, attachments: list[Attachment],
               context: Mapping[str, Any]) -> list[Attachment]:
        """The attachments, or one archive of them if the job says ``zip_attachments``."""
        if self._zip is None or not attachments:
            return attachments
        filename = _file_name(self._zip.render(context), "zip_attachments")
        return [zip_attachments(self.scratch, attachments, filename)]


def _file_name(name: str, where: str) -> str:
    name = name.strip()
    if not name or "/" in name or "\\" in name:
        raise AttachmentProblem(f"{where}: the file name {name!r} must be a plain name such "
                                "as 'sales-north.csv' (no folders)")
    return name


def _text_only(*args: Any, **kwargs: Any) -> str:
    raise jinja2.TemplateRuntimeError("chart() and inline_image() place an image, which only "
                                      "the HTML or Markdown body can show")
