"""The job model: ``load_job(path)`` turns a job file into frozen, validated objects.

Everything a run needs is checked here, before any message is rendered: unknown keys, types,
paths (resolved against the job file's folder); the ``smtp:`` section in smtpsettings.py.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailbatch.errors import JobError
from mailbatch.job.addresses import Address, AddressError, parse_addresses
from mailbatch.job.content import ContentKeys, GeneratedSpec, generated_spec, parse_content
from mailbatch.job.csvfiles import CsvFormat, check_encoding
from mailbatch.job.fields import Section, kind_of
from mailbatch.job.smtpsettings import SmtpSettings, parse_smtp
from mailbatch.job.yamlfile import line_of, load_yaml

__all__ = [
    "LINE_BREAKS",
    "AttachmentSpec",
    "DataFile",
    "GeneratedSpec",
    "Job",
    "Notify",
    "RecipientSource",
    "TemplateSource",
    "load_job",
]

# What the email package (str.splitlines) treats as a line break: none may enter a header.
LINE_BREAKS = "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"
MAX_HEADER_NAME = 76  # an extra header's name: with ": " it fills a 78-character line


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
    csv: CsvFormat = field(default_factory=CsvFormat)


@dataclass(frozen=True)
class DataFile:
    """One of the job's ``data`` files, read once per run as ``data.NAME``."""

    name: str
    path: Path
    csv: CsvFormat = field(default_factory=CsvFormat)


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

    @functools.cached_property
    def mailbox(self) -> Address:
        """``to`` as a (name, address) pair, checked by load_job: the summary's one recipient."""
        return parse_addresses(self.to)[0]


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
    data: tuple[DataFile, ...] = ()
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

    @functools.cached_property
    def mailbox(self) -> Address:
        """``from`` as a (name, address) pair, checked by load_job: the From header field."""
        return parse_addresses(self.sender)[0]

    @property
    def sender_address(self) -> str:
        """The envelope sender (MAIL FROM): the address part of ``from``."""
        return self.mailbox.address

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
    try:
        mailboxes = parse_addresses(sender)
    except AddressError as err:
        raise top.error(f"{err}; write it as 'Name <user@example.com>'", "from") from None
    if len(mailboxes) != 1:
        raise top.error("must be one email address (plain ASCII user@domain); write it as "
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
        attachments_root=_folder(top, "attachments_root", base),
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


def _folder(top: Section, name: str, base: Path) -> Path | None:
    """A folder that must exist: every attachment pattern is looked up under it, and a wrong
    one would otherwise fail every recipient alike, one render failure each."""
    path = top.path_(name, base)
    if path is not None and not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise top.error(f"{path} {what}; it must name the folder the attachments are in", name)
    return path


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
        csv=_csv_format(sec),
    )
    sec.done()
    return source


def _csv_format(sec: Section) -> CsvFormat:
    """``delimiter`` and ``encoding`` of a CSV file (each found from the file if not given)."""
    delimiter = sec.get("delimiter", str)
    if delimiter is not None:
        delimiter = {"tab": "\t", "\\t": "\t"}.get(delimiter.lower(), delimiter)
        if len(delimiter) != 1 or delimiter in "\r\n\"" or delimiter.isalnum():
            raise sec.error("must be one character such as ',' or ';' (or tab)", "delimiter")
    encoding = sec.get("encoding", str)
    if encoding is not None and check_encoding(encoding):
        raise sec.error(check_encoding(encoding) or "", "encoding")
    return CsvFormat(delimiter, encoding)


def _headers(top: Section) -> tuple[tuple[str, str], ...]:
    sec = top.sub("headers")
    reserved = {"from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version",
                "content-type", "content-transfer-encoding", "reply-to"}
    result = []
    for name in list(sec.mapping):
        if not re.fullmatch(r"[!-9;-~]+", name) or name.lower() in reserved:
            raise sec.error("is not a header you can set here (use the job's own keys for "
                            "from, to, cc, bcc, reply_to and subject)", name)
        if len(name) > MAX_HEADER_NAME:  # "Name: " and a word must fit on a line
            raise sec.error(f"header names can be at most {MAX_HEADER_NAME} characters long",
                            name)
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
        spec = AttachmentSpec(
            pattern=sec.text("pattern", required=True),
            optional=sec.get("optional", bool, False),
            content_type=sec.text("type"),
            line=line,
        )
        if spec.content_type and not re.fullmatch(r"[\w.+-]{1,127}/[\w.+-]{1,127}",
                                                  spec.content_type, re.ASCII):
            raise sec.error("must be a MIME type like application/pdf", "type")
        specs.append(spec)
        sec.done()
    return tuple(specs)


def _data(top: Section, base: Path) -> tuple[DataFile, ...]:
    """``data: {NAME: FILE}``, or ``{NAME: {file: FILE, delimiter: ..., encoding: ...}}``."""
    sec = top.sub("data")
    result = []
    for name in list(sec.mapping):
        if not name.isidentifier():
            raise sec.error("data names must be identifiers (letters, digits, _)", name)
        csv = CsvFormat()
        if isinstance(sec.mapping[name], Mapping):
            entry = sec.sub(name)
            file = entry.text("file", required=True)
            csv = _csv_format(entry)
            entry.done()
        else:
            file = sec.text(name, required=True)
        suffix = Path(file).suffix.lower()
        if suffix not in (".csv", ".json", ".yaml", ".yml"):
            raise sec.error("data files must be .csv, .json, .yaml or .yml", name)
        if csv != CsvFormat() and suffix != ".csv":
            raise sec.error("delimiter and encoding are for .csv files", name)
        result.append(DataFile(name, sec.checked_path(name, file, base), csv))
    return tuple(result)


def _schedule(top: Section) -> str | None:
    value: str | None = top.text("schedule")
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
    try:
        mailboxes = () if any(c in notify.to for c in LINE_BREAKS) else \
            parse_addresses(notify.to)
    except AddressError:
        mailboxes = ()
    if len(mailboxes) != 1:
        raise sec.error("is not an email address (one, plain ASCII user@domain); write it as "
                        "'owner@example.com' or 'Owner <owner@example.com>'", key)
    return notify
