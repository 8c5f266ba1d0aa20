"""Rendering: one Jinja environment per job, templates compiled once, ``render(recipient)``.

Recipient values are only ever passed to templates as data, never compiled as template code.
"""

from __future__ import annotations

import datetime as dt
import functools
import glob
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import jinja2
import jinja2.meta
import jinja2.nodes

from mailbatch.errors import JobError, MailbatchError
from mailbatch.job.addresses import Address, AddressError, ascii_address, is_valid_address
from mailbatch.job.datafiles import load_data
from mailbatch.job.fields import batch_problem, path_problem, place_problem
from mailbatch.job.model import LINE_BREAKS, AttachmentSpec, GeneratedSpec, Job, TemplateSource
from mailbatch.job.recipients import Recipient
from mailbatch.message.addressing import (
    AddressFields,
    AddressProblem,
    Mailboxes,
    Widened,
    mailbox,
)
from mailbatch.message.attachments import Attachment, AttachmentProblem, find
from mailbatch.message.bodies import Content, Generator
from mailbatch.message.generated import Scratch
from mailbatch.message.inline import InlineImage, collecting
from mailbatch.message.sandbox import BoundedEnvironment, Budget, BudgetExceeded
from mailbatch.message.template_errors import problem_in_template
from mailbatch.message.templates import Environment, ReadOnce

__all__ = ["RenderFailure", "Rendered", "Renderer", "run_context"]


class RenderFailure(Exception):
    """Raised when one recipient's message cannot be rendered; the text names the recipient.
    ``stop``: the render pass stops here (a template over its time budget would most likely
    take as long for every recipient)."""

    def __init__(self, message: str, *, stop: bool = False) -> None:
        super().__init__(message)
        self.stop = stop


@dataclass(frozen=True)
class Rendered:
    """One message, rendered but not yet serialised (serialising is compose.py's job).
    Addresses are (display name, address) pairs, read once from the rendered text; an
    extra header is text, or pairs for an address-type one (Sender, Resent-To, ...)."""

    recipient: Recipient
    sender: Address
    to: Mailboxes
    cc: Mailboxes
    bcc: Mailboxes
    reply_to: Mailboxes
    subject: str
    headers: tuple[tuple[str, str | Mailboxes], ...]
    text: str | None
    html: str | None
    attachments: tuple[Attachment, ...]
    message_id: str
    widened: Widened = ()  # to, cc or bcc values that gave more addresses than named
    inline_images: tuple[InlineImage, ...] = ()  # the related parts of the HTML body

    @property
    def key(self) -> str:
        return self.recipient.key

    @functools.cached_property
    def envelope_recipients(self) -> list[str]:
        """Every address the server must deliver to: To, Cc and Bcc, each once (made once: the
        sender asks for them twice, to announce the envelope and to send it). An address in
        both To and Cc is one RCPT: a server that does not merge them delivers two copies.
        Compared case-insensitively, as recipients are."""
        unique: dict[str, str] = {}
        for address in (*self.to, *self.cc, *self.bcc):
            unique.setdefault(address.address.lower(), address.address)
        return list(unique.values())


def run_context(job: Job, now: dt.datetime) -> dict[str, Any]:
    """Names available to the batch, report and outbox templates (and to every message)."""
    iso = now.isocalendar()
    return {
        "job": job.name,
        "today": now.date().isoformat(),
        "now": now,
        "iso_week": f"{iso.year}-W{iso.week:02d}",
    }


class Renderer:
    """Compiles a job's templates once and renders each recipient's message."""

    def __init__(self, job: Job, now: dt.datetime | None = None, *,
                 message_id_salt: str = "", scratch: str | None = None) -> None:
        self.job = job
        self.now = now or dt.datetime.now().astimezone()
        self._sources = hashlib.sha256()  # every template source compiled: the fingerprint
        self._loader = loader = ReadOnce([str(job.folder)])
        self._loaded: set[tuple[int, str]] = set()
        common = {"undefined": jinja2.StrictUndefined, "loader": loader,
                  "keep_trailing_newline": True, "auto_reload": False}
        self.text_env = Environment(autoescape=False, **common)
        self.text_env.globals["mailbox"] = mailbox  # for to:, cc:, reply_to: and headers
        self.html_env = Environment(autoescape=True, **common)
        # In attachment patterns a value is a literal name: a region of "*" must not match
        # every region's files (the glob counterpart of HTML autoescaping).
        self.glob_env = BoundedEnvironment(autoescape=False, finalize=_glob_literal, **common)
        # A Markdown body: Jinja first (no autoescape: it is not HTML yet), then Markdown.
        self.markdown_env = Environment(autoescape=False, **common)
        self.budget = Budget()  # per message (and per job-level string such as the batch)
        self.context = run_context(job, self.now)
        self.context["data"] = load_data(job)
        self.batch = self.string("batch", job.batch, self.context).strip()
        problem = batch_problem(self.batch)  # the journal, the report and the outbox use it
        if problem:
            raise JobError(problem, path=str(job.path), field="batch")
        self.context["batch"] = self.batch
        self.message_id_salt = message_id_salt
        self._domain = job.sender_domain  # parsed once, not per message
        self._sender = job.mailbox
        self.attachments_root = job.attachments_root or job.folder
        self._real_root = self.attachments_root.resolve()  # once, not once per recipient
        # Generated files (charts, CSV, zip) go to a scratch folder; a render worker is given
        # its parent's, see renderworker.py.
        self.scratch = Scratch(scratch)
        self._content = Content(job, self._compile, {
            "text": self.text_env, "html": self.html_env, "markdown": self.markdown_env},
            self.attachments_root, job.sender_domain, self.scratch)
        self._sources.update("\0".join(self._content.sources).encode())
        env = self.text_env
        self._subject = self._compile(env, TemplateSource("subject", text=job.subject))
        self._to = self._compile(env, TemplateSource("to", text=job.to)) if job.to else None
        self._reply_to = self._compile(env, TemplateSource("reply_to", text=job.reply_to)) \
            if job.reply_to else None
        self._cc = [self._compile(env, TemplateSource("cc", text=v)) for v in job.cc]
        self._bcc = [self._compile(env, TemplateSource("bcc", text=v)) for v in job.bcc]
        self._addresses = AddressFields(env, job)
        self._headers = [(name, self._compile(env, TemplateSource(f"headers.{name}", text=v)))
                         for name, v in job.headers]
        self._text = self._compile(env, job.text) if job.text else None
        self._html = self._compile(self.html_env, job.html) if job.html else None
        self._markdown = self._compile(self.markdown_env, job.markdown) if job.markdown else None
        self._patterns: list[tuple[AttachmentSpec | GeneratedSpec,
                                   jinja2.Template | Generator]] = [
            (spec, self._content.generator(i, spec) if isinstance(spec, GeneratedSpec) else
             self._compile(self.glob_env, TemplateSource(f"attachments[{i}]", text=spec.pattern)))
            for i, spec in enumerate(job.attachments)]
        # The files each pattern found last: a pattern that renders the same for every
        # recipient (a shared logo) is looked up once, not once per message.
        self._found: list[tuple[str, list[Attachment]] | None] = [None] * len(self._patterns)
        # Two renderers of one job agree only if they read the same templates and data (a
        # render worker checks this against the parent's, see renderworker.py).
        self._sources.update(b"\0" + repr(self.context).encode())
        self.fingerprint = self._sources.hexdigest()

    def string(self, name: str, source: str, context: Mapping[str, Any]) -> str:
        """Render a one-off job-level string such as ``batch`` or ``report``."""
        template = self._compile(self.text_env, TemplateSource(name, text=source))
        try:
            with self.budget:
                text = template.render(context)
        except jinja2.TemplateError as err:
            raise JobError(f"{err}; the names available here are "
                           f"{', '.join(sorted(context))}", path=str(self.job.path),
                           field=name) from None
        except MailbatchError:
            raise
        except (Exception, BudgetExceeded) as err:  # 1 // 0, a loop without end
            raise JobError(problem_in_template(err, self.budget.seconds),
                           path=str(self.job.path), field=name) from None
        problem = path_problem(text) or place_problem(name, text)  # each is part of a path
        if problem:
            raise JobError(f"renders to {text[:60]!r}, not a usable path: {problem}",
                           path=str(self.job.path), field=name)
        return text

    def _compile(self, env: jinja2.Environment, source: TemplateSource) -> jinja2.Template:
        where = str(source.path) if source.path else str(self.job.path)
        try:
            text = source.path.read_text(encoding="utf-8") if source.path is not None \
                else source.text or ""
            self._sources.update(b"\0" + text.encode())
            tree = env.parse(text)  # parsed once: compiled, and searched for the templates it names
            template = env.from_string(tree)
            template.filename = source.name  # what a runtime error's line is shown in
            self._load_references(env, tree)
            return template
        except jinja2.TemplateSyntaxError as err:
            line, field = (err.lineno, None) if source.path else (None, source.name)
            if err.filename and err.name:  # in a template this one includes or extends
                where, line, field = err.filename, err.lineno, None
            raise JobError(f"template syntax error: {err.message}; fix the template",
                           path=where, line=line, field=field) from None
        except (UnicodeDecodeError, OSError) as err:
            raise _unreadable(where, err) from None

    def _load_references(self, env: jinja2.Environment, tree: jinja2.nodes.Template) -> None:
        """Load the templates ``tree`` includes, imports or extends by name (and theirs) now,
        into the fingerprint: a render worker must see the same versions. A name computed
        while rendering is loaded then, and is not in the fingerprint."""
        pending = [tree]
        while pending:
            for name in jinja2.meta.find_referenced_templates(pending.pop()):
                if name is None or (id(env), name) in self._loaded:
                    continue
                self._loaded.add((id(env), name))
                try:
                    env.get_template(name)
                except jinja2.TemplateNotFound:
                    continue  # perhaps never used; a render that needs it says so
                except (UnicodeDecodeError, OSError) as err:
                    raise _unreadable(str(self.job.folder / name), err) from None
                source = self._loader.read[name][0]
                self._sources.update(b"\0" + name.encode() + b"\0" + source.encode())
                pending.append(env.parse(source))

    def render(self, recipient: Recipient) -> Rendered:
        """Render everything one recipient gets; any problem raises RenderFailure, and so does
        a render over its time budget (``stop``). Nothing the data or a template does escapes
        as another exception: a template runtime error is that recipient's render failure."""
        try:
            with self.budget:
                return self._render(recipient)
        except (RenderFailure, MailbatchError):  # a helper's own error keeps its exit code
            raise
        except BudgetExceeded as err:
            raise RenderFailure(f"{recipient.where} ({recipient.address}): "
                                f"{problem_in_template(err, self.budget.seconds)}",
                                stop=True) from None
        except Exception as err:  # ZeroDivisionError, TypeError, a bound: data met a template
            raise RenderFailure(f"{recipient.where} ({recipient.address}): "
                                f"{problem_in_template(err)}") from None

    def _render(self, recipient: Recipient) -> Rendered:
        where = f"{recipient.where} ({recipient.address})"
        if not is_valid_address(recipient.address):
            try:
                ascii_address(recipient.address)
            except AddressError as err:  # beyond ASCII: the reason is more than syntax
                raise RenderFailure(f"{where}: {err}") from None
            raise RenderFailure(f"{where}: {recipient.address!r} is not a valid email address; "
                                "correct it in the recipient list")
        context = {**self.context, **recipient.fields, "recipient": recipient.fields,
                   "recipient_address": recipient.address, "recipient_name": recipient.name}
        current = "subject"
        try:
            subject = self._subject.render(context)
            current = "to"
            to = self._to.render(context) if self._to else None
            current = "reply_to"
            reply_to = self._reply_to.render(context) if self._reply_to else ""
            current = "cc"
            cc = [t.render(context) for t in self._cc]
            current = "bcc"
            bcc = [t.render(context) for t in self._bcc]
            headers = []
            for name, template in self._headers:
                current = f"headers.{name}"
                headers.append((name, template.render(context)))
            current = self.job.text.name if self.job.text else ""
            text = self._text.render(context) if self._text else None
            with collecting(self._content.images(context)) as images:
                current = self._content.body_name
                html = self._html.render(context) if self._html else None
                source = self._markdown.render(context) if self._markdown else None
            text, html, inline = self._content.finish(text, html, source, images)
            attachments = []
            for i, (spec, compiled) in enumerate(self._patterns):
                current = f"attachments[{i}]"
                if isinstance(spec, GeneratedSpec):
                    attachments.append(cast(Generator, compiled)(context))
                    continue
                pattern = cast(jinja2.Template, compiled).render(context)
                last = self._found[i]
                if last is not None and last[0] == pattern:
                    found = last[1]
                else:
                    found = find(pattern, self.attachments_root, spec.content_type,
                                 real_root=self._real_root)
                    self._found[i] = (pattern, found)
                if not found and not spec.optional:
                    raise AttachmentProblem(f"attachment pattern {pattern!r} matches no file "
                                            f"under {self.attachments_root}; add the file or "
                                            "mark the pattern optional: true")
                attachments.extend(found)
            current = "zip_attachments"
            attachments = self._content.zipped(attachments, context)
        except jinja2.UndefinedError as err:
            raise RenderFailure(f"{where}: {current}: {err.message}; add it to the recipient "
                                "data or the job's data files") from None
        except jinja2.TemplateNotFound as err:  # a name computed while rendering
            raise RenderFailure(f"{where}: {current}: template {err.name!r} not found; "
                                "templates are looked up inside the job's folder, by a path "
                                "relative to it") from None
        except jinja2.TemplateError as err:
            raise RenderFailure(f"{where}: {current}: {err}") from None
        except AttachmentProblem as err:
            raise RenderFailure(f"{where}: {err}") from None
        values = {"subject": subject, "to": to or "", "reply_to": reply_to,
                  "name": recipient.name if to is None else "",
                  **{f"cc {v}": v for v in cc}, **{f"bcc {v}": v for v in bcc},
                  **{f"header {n}": v for n, v in headers},
                  **{f"attachment {a.filename}": a.filename for a in attachments}}
        for name, value in values.items():
            if any(c in value for c in LINE_BREAKS):
                raise RenderFailure(f"{where}: {name} contains a line break (header "
                                    "injection); remove line breaks from that value")
        try:
            read = self._addresses.read(recipient, to, reply_to, cc, bcc, headers)
        except AddressProblem as err:
            raise RenderFailure(f"{where}: {err}") from None
        return Rendered(
            recipient=recipient, sender=self._sender, to=read.to, cc=read.cc, bcc=read.bcc,
            reply_to=read.reply_to, subject=subject, headers=read.headers, text=text,
            html=html, attachments=tuple(attachments),
            message_id=self.message_id(recipient.key), widened=read.widened,
            inline_images=inline,
        )

    def settle(self, own_only: bool = False) -> None:
        """Wait until the charts of every message rendered so far are drawn (they are drawn
        on the other core meanwhile, see drawer.py); RenderError if one cannot be."""
        self._content.settle(own_only)

    def message_id(self, key: str) -> str:
        """Stable per batch and recipient, so a resumed send carries the same Message-ID."""
        seed = f"{self.job.path}\0{self.batch}\0{key}\0{self.message_id_salt}".encode()
        return f"<{hashlib.sha256(seed).hexdigest()[:32]}.mailbatch@{self._domain}>"


def _unreadable(path: str, err: UnicodeDecodeError | OSError) -> JobError:
    """A template file that cannot be read as text, named."""
    if isinstance(err, UnicodeDecodeError):
        return JobError("template is not UTF-8 text; save it as UTF-8", path=path)
    return JobError(f"cannot read template: {err.strerror}", path=path)


def _glob_literal(value: Any) -> str:
    """Finalize hook: the value of every ``{{ ... }}`` in a pattern, with glob syntax escaped."""
    return glob.escape(str(value))
