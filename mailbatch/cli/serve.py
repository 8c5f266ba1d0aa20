"""``mailbatch preview --serve``: the message as sent, in a browser, reloading on every change.

A standard-library HTTP server on 127.0.0.1 only. Every page renders the chosen recipient's
message afresh with the code ``preview`` uses (nothing is sent, no secret is read). The page
asks once a second whether the job file, a template, the recipient list or a data file changed,
and reloads when one did. The message's HTML is shown in a sandboxed frame that runs no script.
"""

from __future__ import annotations

import hashlib
import html
import logging
import threading
import urllib.parse
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mailbatch.cli.boundary import printable, size_text
from mailbatch.cli.preview import Preview, preview
from mailbatch.errors import MailbatchError
from mailbatch.job.model import Job, load_job
from mailbatch.job.recipients import iter_recipients
from mailbatch.message.inline import rewrite_references

__all__ = ["PreviewServer"]

log = logging.getLogger(__name__)

PICKER_LIMIT = 500  # recipients listed in the picker; any other is reached by number or address
WATCH_LIMIT = 2000  # files looked at for changes, so a huge template folder cannot stall a page
# The message frame: its own styles and images, nothing else; no script, no form, no navigation.
_FRAME_POLICY = ("default-src 'none'; img-src 'self' data: https: http:; style-src 'unsafe-inline' "
                 "https: http:; font-src https: http: data:")


class PreviewServer(ThreadingHTTPServer):
    """Serves previews of one job file; ``serve_forever()`` until interrupted."""

    daemon_threads = True

    def __init__(self, job_path: str | Path, port: int = 0) -> None:
        self.job_path = Path(job_path).absolute()
        self.lock = threading.Lock()  # rendering reads files; one page at a time is plenty
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"

    def load(self) -> Job:
        return load_job(self.job_path)

    def version(self) -> str:
        """A digest of what the preview depends on: changes when any of those files does."""
        digest = hashlib.sha256()
        for path in sorted(set(_watched(self))):
            try:
                stat = path.stat()
            except OSError:
                digest.update(f"{path}\0gone\0".encode())
                continue
            digest.update(f"{path}\0{stat.st_mtime_ns}\0{stat.st_size}\0".encode())
        return digest.hexdigest()[:16]


def _watched(server: PreviewServer) -> Iterator[Path]:
    """The job file and, if it loads, the files it names and the folders of its templates."""
    yield server.job_path
    try:
        job = server.load()
    except MailbatchError:
        return
    folders = {job.folder}
    if job.recipients.path is not None:
        yield job.recipients.path
    for entry in job.data:
        yield entry.path
    for source in (job.text, job.html, job.markdown):
        if source is not None and source.path is not None:
            folders.add(source.path.parent)
    count = 0
    for folder in sorted(folders):
        for path in folder.rglob("*"):
            if count >= WATCH_LIMIT:
                return
            if path.suffix in (".j2", ".jinja", ".html", ".txt", ".md", ".css", ".yaml",
                               ".yml", ".csv", ".json") and path.is_file():
                count += 1
                yield path


class _Handler(BaseHTTPRequestHandler):
    server: PreviewServer
    server_version = "mailbatch-preview"

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        which = next((v for v in reversed(query.get("r", [])) if v.strip()), "1")
        if url.path == "/version":
            self._send(self.server.version(), "text/plain; charset=utf-8")
        elif url.path == "/":
            self._send(self._page(which), "text/html; charset=utf-8")
        elif url.path in ("/html", "/eml", "/image"):
            shown, problem = self._preview(which)
            if shown is None:
                self._send(problem, "text/plain; charset=utf-8", HTTPStatus.NOT_FOUND)
            elif url.path == "/eml":
                self._send(shown.data, "message/rfc822", headers={
                    "Content-Disposition": f'attachment; filename="message-{shown.number}.eml"'})
            elif url.path == "/image":  # an inline image of the HTML part, by its cid
                cid = next(iter(query.get("cid", [])), "")
                found = [(i, data) for i, data in shown.images if i.cid == cid]
                if found:
                    self._send(found[0][1], found[0][0].content_type)
                else:
                    self._send("no such image", "text/plain; charset=utf-8",
                               HTTPStatus.NOT_FOUND)
            else:  # its inline images (cid:) from /image, as the message shows them
                urls = {i.cid: "/image?" + urllib.parse.urlencode({"r": which, "cid": i.cid})
                        for i, _ in shown.images}
                self._send(rewrite_references(shown.html or "", urls),
                           "text/html; charset=utf-8",
                           headers={"Content-Security-Policy": _FRAME_POLICY})
        else:
            self._send("not found", "text/plain; charset=utf-8", HTTPStatus.NOT_FOUND)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("preview server: " + format, *args)

    def _send(self, body: str | bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK,
              headers: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _preview(self, which: str) -> tuple[Preview | None, str]:
        """The recipient's message, or the problem that stops it, as one printable text."""
        with self.server.lock:
            try:
                return preview(self.server.load(), which), ""
            except MailbatchError as err:
                return None, printable(str(err))

    def _page(self, which: str) -> str:
        shown, problem = self._preview(which)
        with self.server.lock:
            picker = _picker(self.server, which)
        version = self.server.version()
        title = f"mailbatch preview: {self.server.job_path.name}"
        body = _message(shown, which) if shown is not None else \
            f'<p class="error">{_e(problem)}</p>'
        return _PAGE.format(title=_e(title), picker=picker, body=body, version=_e(version))


def _picker(server: PreviewServer, which: str) -> str:
    """The recipient list (the first PICKER_LIMIT) and a box for a number or an address."""
    try:
        options = []
        for recipient in iter_recipients(server.load()):
            number = recipient.index + 1
            if number > PICKER_LIMIT:
                break
            label = f"{number}. {recipient.name} <{recipient.address}>" if recipient.name \
                else f"{number}. {recipient.address}"
            chosen = " selected" if which.strip() in (str(number), recipient.address) else ""
            options.append(f'<option value="{number}"{chosen}>{_e(printable(label))}</option>')
    except MailbatchError:
        options = []
    return ('<form method="get" action="/"><select name="r" onchange="this.form.submit()">'
            f'{"".join(options)}</select> <input name="r" placeholder="number or address" '
            'size="24"> <button>show</button></form>')


def _message(shown: Preview, which: str) -> str:
    query = urllib.parse.urlencode({"r": which})
    rows = "".join(f"<tr><th>{_e(name)}</th><td>{_e(printable(value))}</td></tr>"
                   for name, value in shown.headers)
    rows += f"<tr><th>Envelope</th><td>{_e(printable(', '.join(shown.envelope)))}</td></tr>"
    if shown.bcc:
        rows += f"<tr><th>Bcc</th><td>{_e(printable(', '.join(shown.bcc)))}</td></tr>"
    files = "".join(f"<li>{_e(printable(a.filename))} <small>{_e(a.content_type)}, "
                    f"{_e(size_text(a.size))}</small></li>" for a in shown.attachments)
    parts = [f'<p class="meta">message {shown.number} of {shown.total} '
             f'({_e(printable(shown.where))}), {_e(size_text(shown.size))} &middot; '
             f'<a href="/eml?{query}">download .eml</a></p>',
             f"<table>{rows}</table>",
             f"<h2>Attachments</h2><ul>{files}</ul>" if files else "<p>No attachments.</p>"]
    if shown.html is not None:
        parts.append(f'<h2>HTML part</h2><iframe sandbox src="/html?{query}" '
                     'title="HTML part"></iframe>')
    if shown.text is not None:
        parts.append(f"<h2>Text part</h2><pre>{_e(printable(shown.text))}</pre>")
    return "\n".join(parts)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; }}
th {{ text-align: left; vertical-align: top; padding-right: 1em; white-space: nowrap; }}
iframe {{ width: 100%; height: 70vh; border: 1px solid #ccc; background: #fff; }}
pre {{ background: #f6f6f6; padding: 1em; white-space: pre-wrap; }}
.error {{ color: #a00; white-space: pre-wrap; font-family: monospace; }}
.meta {{ color: #555; }}
</style></head>
<body data-version="{version}">
<h1>{title}</h1>
{picker}
{body}
<p class="meta">Nothing is sent from this page. It reloads when the job, a template, the recipient
list or a data file changes.</p>
<script>
setInterval(async () => {{
  try {{
    const now = await (await fetch("/version", {{cache: "no-store"}})).text();
    if (now !== document.body.dataset.version) location.reload();
  }} catch (e) {{}}
}}, 1000);
</script>
</body></html>
"""
