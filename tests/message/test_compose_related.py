"""The body shapes of a report: text, HTML, and HTML with inline images, inside
``multipart/alternative`` and ``multipart/mixed``. Any combination composes to a message the
email package parses without defects into exactly the tree RFC 2046/2387 ask for, decoding to
the input, and to the same view as the message the email package itself builds."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mailbatch.message.compose
from mailbatch.job.addresses import Address
from mailbatch.job.recipients import Recipient
from mailbatch.message.attachments import Attachment
from mailbatch.message.compose import compose
from mailbatch.message.inline import InlineImage
from mailbatch.message.parts import AttachmentCache
from mailbatch.message.render import Rendered
from tests.reportfiles import png

DATE = "Mon, 02 Jun 2025 09:30:00 +0200"
SMTP = email.policy.SMTP.clone(cte_type="7bit")


def message(folder: Path, text: str | None, html: str | None,
            images: list[tuple[str, bytes]], attachments: list[tuple[str, bytes]]) -> Rendered:
    """A Rendered report; ``images`` are (cid, PNG bytes), ``attachments`` (name, bytes)."""
    inline = []
    for i, (cid, data) in enumerate(images):
        path = folder / f"image{i}.png"
        path.write_bytes(data)
        inline.append(InlineImage(path, f"image{i}.png", "image/png", len(data), cid))
    files = []
    for i, (name, data) in enumerate(attachments):
        path = folder / f"file{i}"
        path.write_bytes(data)
        files.append(Attachment(path, name, "application/octet-stream", len(data)))
    return Rendered(
        recipient=Recipient(0, "anne@example.org", "Anne", {}, "people.csv:2"),
        sender=Address("Reports", "reports@example.org"),
        to=(Address("Anne", "anne@example.org"),), cc=(), bcc=(),
        reply_to=(), subject="Weekly sales", headers=(), text=text, html=html,
        attachments=tuple(files), message_id="<0123456789abcdef.mailbatch@example.org>",
        inline_images=tuple(inline))


def expected_tree(m: Rendered) -> list[tuple[int, str]]:
    """The MIME tree a report of these parts must have, depth first."""
    if m.html is None or (m.text is None and not m.inline_images):
        body = [(0, "text/plain" if m.text is not None else "text/html")]
    else:
        html = [(0, "text/html")]
        if m.inline_images:
            html = [(0, "multipart/related"), (1, "text/html"),
                    *((1, "image/png") for _ in m.inline_images)]
        body = html if m.text is None else [
            (0, "multipart/alternative"), (1, "text/plain"), *((d + 1, t) for d, t in html)]
    if not m.attachments:
        return body
    return [(0, "multipart/mixed"), *((d + 1, t) for d, t in body),
            *((1, "application/octet-stream") for _ in m.attachments)]


def tree(part: EmailMessage, depth: int = 0) -> list[tuple[int, str]]:
    out = [(depth, part.get_content_type())]
    if part.is_multipart():
        for child in part.iter_parts():
            out += tree(child, depth + 1)  # type: ignore[arg-type]
    return out


def lf(text: str) -> str:
    text = re.sub(r"\r\n|\r", "\n", text)
    return text if text.endswith("\n") else text + "\n"


def view(parsed: EmailMessage) -> dict[str, Any]:
    """What a reader sees: bodies, inline images by Content-ID, attachments."""
    text, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    images = [(str(p["Content-ID"]), p.get_content_type(), p.get_content_disposition(),
               p.get_payload(decode=True)) for p in parsed.walk() if p["Content-ID"]]
    return {
        "text": lf(text.get_content()) if text is not None else None,
        "html": lf(html.get_content()) if html is not None else None,
        "images": images,
        # (iter_attachments of a top-level related part would list its images)
        "attachments": [(p.get_filename(), p.get_payload(decode=True))
                        for p in parsed.iter_attachments()]
        if parsed.get_content_type() == "multipart/mixed" else [],
    }


def check(m: Rendered) -> bytes:
    """Compose; assert the wire rules, the tree, no defects, and the decoded content."""
    data = compose(m, AttachmentCache(), DATE)
    assert data.isascii()
    assert b"\r" not in data.replace(b"\r\n", b"") and b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert [p.defects for p in parsed.walk()] == [[] for _ in parsed.walk()]
    assert tree(parsed) == expected_tree(m)
    got = view(parsed)
    html_expected = lf(m.html) if m.html is not None else (lf("") if m.text is None else None)
    assert got["text"] == (lf(m.text) if m.text is not None else None)
    assert got["html"] == html_expected
    assert got["images"] == [(f"<{i.cid}>", "image/png", "inline", i.path.read_bytes())
                             for i in m.inline_images]
    assert got["attachments"] == [(a.filename, a.path.read_bytes()) for a in m.attachments]
    related = [p for p in parsed.walk() if p.get_content_type() == "multipart/related"]
    assert all(p.get_param("type") == "text/html" for p in related)
    return data


def reference(m: Rendered) -> bytes:
    """The same report built with the email package (add_related for each image)."""
    top = EmailMessage(policy=SMTP)
    top["From"], top["To"], top["Subject"] = str(m.sender), str(m.to[0]), m.subject
    if m.text is not None:
        top.set_content(m.text)
        top.add_alternative(m.html or "", subtype="html")
        html_part = top.get_payload()[1]
    else:
        top.set_content(m.html or "", subtype="html")
        html_part = top
    for image in m.inline_images:
        html_part.add_related(image.path.read_bytes(), "image", "png", cid=f"<{image.cid}>",
                              disposition="inline")
    for a in m.attachments:
        top.add_attachment(a.path.read_bytes(), "application", "octet-stream",
                           filename=a.filename)
    return top.as_bytes()


LOGO, CHART = png(3, 2, (1, 2, 3)), png(5, 5, (200, 100, 0))
CASES = {
    "html with one image": ("Hi\n", '<img src="cid:logo">\n', [("logo", LOGO)], []),
    "html with two images and a pdf": (
        "Hi\n", '<img src="cid:logo"><img src="cid:c.1@example.org">\n',
        [("logo", LOGO), ("c.1@example.org", CHART)], [("report.pdf", b"%PDF-1.4\r\n.\r\n")]),
    "html only with an image": (None, '<p>é</p><img src="cid:logo">', [("logo", LOGO)], []),
    "html only with an image and a file": (None, "<p>x</p>", [("logo", LOGO)],
                                           [("a.bin", bytes(range(256)))]),
    "an empty image": ("t\n", '<img src="cid:empty">', [("empty", b"")], []),
    "non-ascii and long lines": ("Grüße " * 40 + "\n", "<p>" + "€" * 300 + "</p>",
                                 [("logo", LOGO)], []),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_report_with_inline_images_has_the_related_tree_and_decodes_as_the_email_package_does(
        tmp_path, case):
    m = message(tmp_path, *case)

    data = check(m)

    reference_view = view(email.message_from_bytes(reference(m), policy=email.policy.default))
    assert view(email.message_from_bytes(data, policy=email.policy.default)) == reference_view


def test_boundaries_of_nested_parts_differ_and_avoid_every_literal_part(tmp_path, monkeypatch):
    """The only way to make a random boundary collide is to fix the random bytes."""
    draws = iter([int(digit * 24, 16) for digit in "11234"])
    monkeypatch.setattr(mailbatch.message.compose._RANDOM, "getrandbits", lambda n: next(draws))
    taken = "--=_" + "11" * 12

    data = check(message(tmp_path, "text\n", f"<p>{taken}</p>\n", [("logo", LOGO)],
                         [("a.pdf", b"%PDF")]))

    boundaries = re.findall(rb'boundary="([^"]+)"', data)
    assert len(set(boundaries)) == 3 and b"=_" + b"11" * 12 not in boundaries


printable = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
cids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}(@example\.org)?", fullmatch=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(text=st.none() | printable, html=st.none() | printable,
       images=st.lists(st.tuples(cids, st.binary(max_size=300)), max_size=3,
                       unique_by=lambda item: item[0]),
       attachments=st.lists(st.tuples(st.from_regex(r"[a-z]{1,8}\.bin", fullmatch=True),
                                      st.binary(max_size=200)), max_size=2))
def test_any_mix_of_bodies_images_and_attachments_composes_to_the_right_tree(
        tmp_path_factory, text, html, images, attachments):
    if html is None:
        images = []  # images belong to an HTML body; without one the renderer has none
    folder = tmp_path_factory.mktemp("parts")

    check(message(folder, text, html, images, attachments))


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=120))
def test_any_image_file_name_gives_an_inline_part_with_header_lines_of_78(tmp_path, name):
    from mailbatch.message.inline import safe_filename

    path = tmp_path / "image.png"
    path.write_bytes(LOGO)
    filename = safe_filename(name)
    cid = f"{filename}.0123456789ab@example.org"
    m = message(tmp_path, "t\n", f'<img src="cid:{cid}">', [], [])
    m = dataclasses.replace(m, inline_images=(InlineImage(path, filename, "image/png",
                                                          len(LOGO), cid),))

    data = check(m)

    start = data.index(b"Content-Type: image/png")  # the image part's header block
    head = data[start:data.index(b"\r\n\r\n", start)]
    assert b"Content-ID" in head and max(map(len, head.split(b"\r\n"))) <= 78
