"""The job model: ``load_job(path)`` turns a job file into frozen, validated objects.

Everything a run needs is checked here, before any message is rendered: unknown keys, types,
paths (resolved against the job file's folder); the ``smtp:`` section in smtpsettings.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from mailbatch.errors import JobError
from mailbatch.job.addresses import is_valid_address
from mailbatch.job.content import ContentKeys, GeneratedSpec, generated_spec, parse_content
from mailbatch.job.fields import Section, kind_of
from mailbatch.job.smtpsettings import SmtpSettings, parse_smtp
from mailbatch.job.yamlfile import line_of, load_yaml

__all__ = [
    "LINE_BREAKS",
    "AttachmentSpec",
    "GeneratedSpec",
    "Job",
    "Notify",
    "RecipientSource",
    "TemplateSource",
    "load_job",
]

# What the email package (str.splitlines) treats as a line break: none may enter a header.
LINE_BREAKS = "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"


@dataclass(frozen=True)
class TemplateSource:
    """A Jinja template given inline or as a file; ``name`` is what errors show."""

    name: str
    text: str | None = None
    path: Path | None = None


@dataclass(frozen=True)
class RecipientSource:
    inline: tuple[Mapping[str, Any], ...] | None
    path: Path | None
    address_field: str = "email"
    name_field: str = "name"
    line: int | None = None  # where the inline list starts in the job file


@dataclass(frozen=True)
class AttachmentSpec:
    pattern: str  # a Jinja string, then a glob relative to the attachments root
    optional: bool = False
    content_type: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class Notify:
    to: str
    when: str = "failures"  # or "always"


@dataclass(frozen=True)
class Job:
    path: Path
    name: str
    smtp: SmtpSettings
    sender: str
    subject: str
    text: TemplateSource | None
    html: TemplateSource | None
    recipients: RecipientSource
    to: str | None = None  # a Jinja string; by default "Name <address>" of the recipient
    reply_to: str | None = None
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[AttachmentSpec | GeneratedSpec, ...] = ()
    attachments_root: Path | None = None
    data: tuple[tuple[str, Path], ...] = ()
    report: str = "reports/{{ job }}-{{ batch }}"
    outbox: str = "outbox/{{ job }}-{{ batch }}"
    state_dir: Path | None = None
    batch: str = "{{ today }}"
    schedule: str | None = None
    notify: Notify | None = None
    markdown: TemplateSource | None = None  # gives both parts: HTML from it, text as written
    content: ContentKeys = field(default_factory=ContentKeys)  # styling, images: content.py

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def sender_address(self) -> str:
        """The envelope sender (MAIL FROM): the address part of ``from``."""
        return parseaddr(self.sender)[1]

    @property
    def sender_domain(self) -> str:
        return self.sender_address.rpartition("@")[2] or "localhost"


def load_job(path: str | Path) -> Job:
    """Load, validate and freeze a job file; raise JobError naming the file, line and key."""
    path = Path(path).absolute()
    raw = load_yaml(path)
    top = Section(raw, path)
    base = path.parent
    smtp = parse_smtp(top.sub("smtp", required=True), base)
    sender = top.text("from", required=True)
    if any(c in sender for c in LINE_BREAKS):
        raise top.error("must be one line; remove the line break", "from")
    if not is_valid_address(parseaddr(sender)[1]):
        raise top.error("is not an email address (plain ASCII user@domain); write it as "
                        "'Name <user@example.com>'", "from")
    text = _template(top, "text", base)
    html = _template(top, "html", base)
    markdown = _template(top, "markdown", base)
    if text is None and html is None and markdown is None:
        raise top.error("the job has no body; add text_template, html_template, "
                        "markdown_template, text, html or markdown")
    if markdown is not None and (text is not None or html is not None):
        raise top.error("a Markdown body makes both the HTML and the text part; remove "
                        f"{'text' if text is not None else 'html'} (or the Markdown)",
                        "markdown_template" if markdown.path else "markdown")
    job = Job(
        path=path,
        name=path.stem,
        smtp=smtp,
        sender=sender,
        subject=top.text("subject", required=True),
        text=text,
        html=html,
        recipients=_recipients(top, base),
        to=top.text("to"),
        reply_to=top.text("reply_to"),
        cc=top.texts("cc"),
        bcc=top.texts("bcc"),
        headers=_headers(top),
        attachments=_attachments(top),
        attachments_root=top.path_("attachments_root", base),
        data=_data(top, base),
        report=top.text("report", "reports/{{ job }}-{{ batch }}"),
        outbox=top.text("outbox", "outbox/{{ job }}-{{ batch }}"),
        state_dir=top.path_("state_dir", base) or base / ".mailbatch",
        batch=top.text("batch", "{{ today }}"),
        schedule=_schedule(top),
        notify=_notify(top),
        markdown=markdown,
        content=parse_content(top, base),
    )
    top.done()
    return job


def _template(top: Section, kind: str, base: Path) -> TemplateSource | None:
    inline = top.text(kind)
    file = top.text(f"{kind}_template")
    if inline is not None and file is not None:
        raise top.error(f"give either {kind} (inline) or {kind}_template (a file), not both", kind)
    if file is not None:
        path = top.checked_path(f"{kind}_template", file, base)
        if not path.is_file():
            raise top.error(f"template file {file!r} not found (looked in {path.parent})",
                            f"{kind}_template")
        return TemplateSource(name=file, path=path)
    if inline is not None:
        return TemplateSource(name=kind, text=inline)
    return None


def _recipients(top: Section, base: Path) -> RecipientSource:
    value = top.get("recipients", (str, list, Mapping), required=True)
    if isinstance(value, list):
        if not value:
            raise top.error("the recipient list is empty; add at least one recipient",
                            "recipients")
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise JobError(f"must be a mapping with an email key, not {kind_of(item)}",
                               path=str(top.path), line=line_of(value, i),
                               field=f"recipients[{i}]")
        return RecipientSource(inline=tuple(value), path=None, line=line_of(value))
    if isinstance(value, str):
        return RecipientSource(inline=None, path=top.checked_path("recipients", value, base))
    sec = top.sub("recipients")
    source = RecipientSource(
        inline=None,
        path=sec.checked_path("file", sec.text("file", required=True), base),
        address_field=sec.text("address_field", "email"),
        name_field=sec.text("name_field", "name"),
    )
    sec.done()
    return source


def _headers(top: Section) -> tuple[tuple[str, str], ...]:
    sec = top.sub("headers")
    reserved = {"from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version",
                "content-type", "content-transfer-encoding", "reply-to"}
    result = []
    for name in list(sec.mapping):
        if not re.fullmatch(r"[!-9;-~]+", name) or name.lower() in reserved:
            raise sec.error("is not a header you can set here (use the job's own keys for "
                            "from, to, cc, bcc, reply_to and subject)", name)
        result.append((name, sec.text(name, required=True)))
    return tuple(result)


def _attachments(top: Section) -> tuple[AttachmentSpec | GeneratedSpec, ...]:
    value = top.get("attachments", list, [])
    specs: list[AttachmentSpec | GeneratedSpec] = []
    for i, item in enumerate(value):
        line = line_of(value, i)
        if isinstance(item, str):
            specs.append(AttachmentSpec(pattern=item, line=line))
            continue
        sec = Section(item, top.path, f"attachments[{i}]", line)
        if "csv" in sec.mapping:  # written per recipient, see content.py
            specs.append(generated_spec(sec, line))
            continue
        specs.append(AttachmentSpec(
            pattern=sec.text("pattern", required=True),
            optional=sec.get("optional", bool, False),
            content_type=sec.text("type"),
            line=line,
        ))
        if specs[-1].content_type and not re.fullmatch(r"[\w.+-]+/[\w.+-]+",
                                                       specs[-1].content_type):
            raise sec.error("must be a MIME type like application/pdf", "type")
        sec.done()
    return tuple(specs)


def _data(top: Section, base: Path) -> tuple[tuple[str, Path], ...]:
    sec = top.sub("data")
    result = []
    for name in list(sec.mapping):
        if not name.isidentifier():
            raise sec.error("data names must be identifiers (letters, digits, _)", name)
        file = sec.text(name, required=True)
        if Path(file).suffix.lower() not in (".csv", ".json", ".yaml", ".yml"):
            raise sec.error("data files must be .csv, .json, .yaml or .yml", name)
        result.append((name, sec.checked_path(name, file, base)))
    return tuple(result)


def _schedule(top: Section) -> str | None:
    value = top.text("schedule")
    if value is not None:
        from mailbatch.job.timetable import parse_timetable

        try:
            parse_timetable(value)
        except ValueError as err:
            raise top.error(str(err), "schedule") from None
    return value


def _notify(top: Section) -> Notify | None:
    value = top.get("notify", (str, Mapping))
    if value is None:
        return None
    if isinstance(value, str):
        notify, sec, key = Notify(to=value), top, "notify"
    else:
        sec, key = top.sub("notify"), "to"
        notify = Notify(to=sec.text("to", required=True), when=sec.text("when", "failures"))
        if notify.when not in ("failures", "always"):
            raise sec.error("must be 'failures' or 'always'", "when")
        sec.done()
    if any(c in notify.to for c in LINE_BREAKS) or not is_valid_address(
            parseaddr(notify.to)[1]):
        raise sec.error("is not an email address (plain ASCII user@domain); write it as "
                        "'owner@example.com' or 'Owner <owner@example.com>'", key)
    return notify
