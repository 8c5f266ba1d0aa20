"""Differential: every composed message, parsed back by the email package, is exactly its input.

Generated inputs reach for the edges: names, subjects and extra headers of arbitrary Unicode
with quotes, backslashes, commas, semicolons, parentheses, colons, encoded-word look-alikes
and very long words; several To and Cc addresses; bodies with leading dots, ``From ``, long
lines, lone CRs, U+2028 and no final newline; attachments with odd names, of 0, 1, 57, 76
bytes and more, messages (.eml) among them. For each: no defect on any part or header; names,
addresses, subject, extra headers, bodies and attachments decode to the input; and the wire
rules hold (tests/mailcheck.py).

The default run tries a bounded number of examples. A deep run tries more:
``MAILBATCH_DEEP=20000 .venv/bin/python -m pytest tests/message/test_differential.py``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbatch.job.addresses import Address, is_valid_address, tidy_name
from mailbatch.job.recipients import Recipient
from mailbatch.message.attachments import Attachment, content_type_for
from mailbatch.message.compose import compose
from mailbatch.message.parts import AttachmentCache
from mailbatch.message.render import Rendered
from tests.mailcheck import addresses, message_parts, parse, strict_addresses, wire_problems

DEEP = int(os.environ.get("MAILBATCH_DEEP") or 0)
# A deep run is several runs of at most 2,000 examples: Hypothesis keeps a record of every
# example of a run, and 20,000 of these would hold some 3 GB at once.
RUNS = -(-DEEP // 2000) if DEEP else 1
EXAMPLES = -(-DEEP // RUNS) if DEEP else 300
DATE = "Mon, 02 Jun 2025 09:30:00 +0200"
LINE_BREAKS = "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # none may be in a header (render.py)

# -- text -------------------------------------------------------------------------------------

LOOKALIKES = ["=?utf-8?q?Bob?=", "=?UTF-8?B?Qm9i?=", "=?", "?=", "=?x?", "=?utf-8?q?a_b?= c"]
PIECES = [*'"\\,;:()<>[]@.', " ", "  ", "\t", "Anne", "O'Brien", "Müller", "Ñandú", "李小龍",
          "محمد", "שלום", "e\u0301", "a\u0308\u0323", "👩\u200d💻", "🇩🇪", "\u200f", "\xa0",
          "Smith (Sales)", "ACME Reporting (Northern Europe, Middle East & Africa)", *LOOKALIKES]
any_char = st.characters(blacklist_categories=("Cs",))
name_char = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"))  # see name_problem


def _text(chars: st.SearchStrategy[str], pieces: list[str]) -> st.SearchStrategy[str]:
    """Short text of any characters, or runs of tricky pieces, or very long words."""
    return st.one_of(
        st.text(chars, max_size=30),
        st.lists(st.one_of(st.sampled_from(pieces), st.text(chars, min_size=1, max_size=8)),
                 max_size=10).map("".join),
        st.builds(lambda piece, n, tail: piece * n + tail,
                  st.sampled_from(['"', "x", "é", " ", "😀", "\\", "ab "]),
                  st.integers(40, 600), st.text(chars, max_size=3)),
    )


display_names = _text(name_char, [p for p in PIECES if p != "\t"])
header_texts = _text(st.characters(blacklist_categories=("Cs",),
                                   blacklist_characters=LINE_BREAKS),
                     [p for p in PIECES if p not in LINE_BREAKS])
local_parts = st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\.[A-Za-z0-9_+-]{1,8}){0,2}",
                            fullmatch=True)
domains = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?(\.[a-z]{2,8}){1,2}", fullmatch=True)
emails = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains),
    st.sampled_from(["anne@example.org", "x" * 64 + "@" + "d" * 60 + ".example.com"]),
).filter(is_valid_address)
# Names as the renderer makes them: tidied (no spaces around, single spaces inside).
mailboxes = st.builds(Address, display_names.map(tidy_name), emails)

LINES = [".", ".leading dot", "..", "From here", "From me", "x" * 74 + " ", "é" + "x" * 73 + " ",
         "y" * 73 + "\t", "a" * 200, "é" * 80, "", " ", "--=_boundary", "=?utf-8?q?x?=",
         "\u2028", "\x85", "\x00nul", "tab\there", "z" * 75 + ".", "-- "]
bodies = st.one_of(
    st.none(),
    st.text(any_char, max_size=300),
    st.builds(lambda lines, ends, final: "".join(line + ends[i % len(ends)]
                                                  for i, line in enumerate(lines))[:-1 or None]
              + final,
              st.lists(st.one_of(st.sampled_from(LINES), st.text(any_char, max_size=90)),
                       max_size=12),
              st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1, max_size=3),
              st.sampled_from(["", "\n", "\r\n", "\r"])),
)

# -- attachments ------------------------------------------------------------------------------

NAME_PIECES = ["report", " ", "Übersicht", '"', "\\", "'", "=?utf-8?q?x?=", ";", ",", "%20",
               "売上", "(1)", "x" * 60, "é" * 30, "😀", "#", "*"]
file_stems = st.lists(st.one_of(st.sampled_from(NAME_PIECES),
                                st.text(st.characters(blacklist_categories=("Cs", "Cc"),
                                                      blacklist_characters="/"),
                                        min_size=1, max_size=6)),
                      min_size=1, max_size=5).map("".join)
suffixes = st.sampled_from([".pdf", ".txt", ".bin", "", ".csv", ".eml", ".mht", ".EML", ".html"])
EML = (b"From: Anne <anne@example.org>\r\nSubject: Forwarded\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello,\r\n.\r\n--=_x\r\nBye\r\n")
contents = st.one_of(
    st.sampled_from([0, 1, 57, 76, 1000]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    st.binary(max_size=3000),
    st.sampled_from([EML, EML.replace(b"\r\n", b"\n"), EML + b"\xc3\xa9\r\n",
                     EML.rstrip(b"\r\n"), b"Subject: x\r\n\r\n" + b"y" * 999, b"no header\n"]),
)
files = st.lists(st.tuples(file_stems, suffixes, contents), max_size=4)


def expected_part(path: Path, data: bytes) -> tuple[str, bytes]:
    """(type, bytes) an attachment should arrive as, by the rule the README states: a
    message travels as it is, with CRLF line ends, when it is 7-bit text in lines of at most
    998 octets that a reader parses without a defect; otherwise as application/octet-stream."""
    kind = content_type_for(path)
    if not kind.startswith("message/"):
        return kind, data
    text = data.replace(b"\r\n", b"\n")
    crlf = text.replace(b"\n", b"\r\n")
    if data.isascii() and b"\0" not in data and b"\r" not in text and \
            re.match(rb"[!-9;-~]+:", data) and all(len(x) <= 998 for x in text.split(b"\n")) \
            and not any(part.defects or any(v.defects for v in part.values())
                        for part in parse(crlf).walk()):
        return kind, crlf
    return "application/octet-stream", data


def assert_addresses(parsed: Any, name: str, mailboxes: tuple[Address, ...]) -> None:
    """The header holds exactly ``mailboxes``, as the email package reads it; names with
    whitespace other than single spaces by the strict reading (see tests/mailcheck.py)."""
    if not mailboxes:
        assert parsed[name] is None
        return
    assert strict_addresses(parsed, name) == list(mailboxes)
    got = addresses(parsed, name)
    assert got is not None and [a for _, a in got] == [m.address for m in mailboxes]
    for (display, _), mailbox in zip(got, mailboxes, strict=True):
        if mailbox.name == " ".join(mailbox.name.split()):
            assert display == mailbox.name


def lf(text: str) -> str:
    """The documented newline normalisation: CRLF, CR and LF are each one line break, and
    a text body ends with one."""
    text = re.sub(r"\r\n|\r", "\n", text)
    return text if text.endswith("\n") else text + "\n"


# -- the property -----------------------------------------------------------------------------

EXTRA_TEXT = ["X-Note", "X-Report-Region", "Comments", "X-" + "Long-Name-" * 6]
EXTRA_ADDRESS = ["Sender", "Resent-To", "Resent-Cc"]


@st.composite
def messages(draw: Any, folder: Path) -> tuple[Rendered, list[tuple[Path, bytes]]]:
    stored = []
    attachments = []
    for i, (stem, suffix, data) in enumerate(draw(files)):
        name = (stem or "file")[:100] + suffix
        sub = folder / f"{draw(st.integers(0, 10**9))}-{i}"
        sub.mkdir()
        path = sub / name
        path.write_bytes(data)
        stored.append((path, data))
        attachments.append(Attachment(path, name, content_type_for(path), len(data)))
    headers: list[tuple[str, Any]] = [(name, draw(header_texts)) for name in
                                      draw(st.lists(st.sampled_from(EXTRA_TEXT), unique=True,
                                                    max_size=2))]
    headers += [(name, tuple(draw(st.lists(mailboxes, min_size=1, max_size=1 if name ==
                                           "Sender" else 3))))
                for name in draw(st.lists(st.sampled_from(EXTRA_ADDRESS), unique=True,
                                          max_size=2))]
    text, html = draw(bodies), draw(bodies)
    message = Rendered(
        recipient=Recipient(0, "anne@example.org", "Anne", {}, "people.csv:2"),
        sender=draw(mailboxes), to=tuple(draw(st.lists(mailboxes, min_size=1, max_size=4))),
        cc=tuple(draw(st.lists(mailboxes, max_size=4))), bcc=(),
        reply_to=tuple(draw(st.lists(mailboxes, max_size=2))), subject=draw(header_texts),
        headers=tuple(headers), text=text, html=html, attachments=tuple(attachments),
        message_id="<0123456789abcdef.mailbatch@example.org>")
    return message, stored


@pytest.mark.parametrize("run", range(RUNS))
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_composed_message_reads_back_as_its_input_and_keeps_the_wire_rules(run, data):
    with tempfile.TemporaryDirectory(prefix="mailbatch-fuzz-") as folder:
        message, stored = data.draw(messages(Path(folder)))
        raw = compose(message, AttachmentCache(), DATE)
        check(message, stored, raw)


def check(message: Rendered, stored: list[tuple[Path, bytes]], raw: bytes) -> None:
    """Everything the module docstring promises, for one composed message."""

    assert wire_problems(raw) == []
    parsed = parse(raw)
    for part in parsed.walk():
        assert part.defects == [], part.defects
        for name, value in part.items():
            assert value.defects == (), (name, value, value.defects)
    for name, mailboxes in (("From", (message.sender,)), ("To", message.to),
                            ("Cc", message.cc), ("Reply-To", message.reply_to)):
        assert_addresses(parsed, name, mailboxes)
    assert "Bcc" not in parsed
    assert parsed["Subject"] == message.subject
    for name, value in message.headers:
        if isinstance(value, str):
            assert parsed[name] == value
        else:
            assert_addresses(parsed, name, value)
    body_text = parsed.get_body(("plain",))
    body_html = parsed.get_body(("html",))
    assert (lf(body_text.get_content()) if body_text else None) == \
        (lf(message.text) if message.text is not None else None)
    empty = "\n" if message.text is None else None  # no body at all: an empty HTML one
    assert (lf(body_html.get_content()) if body_html else None) == \
        (lf(message.html) if message.html is not None else empty)
    got = list(parsed.iter_attachments())
    # The header's parameters, not get_filename(): that strips the whitespace around a name
    # and takes off a pair of quotes around it once more after decoding ('""' reads '').
    assert [part["Content-Disposition"].params["filename"] for part in got] == \
        [a.filename for a in message.attachments]
    assert [part["Content-Type"].params["name"] for part in got] == \
        [a.filename for a in message.attachments]
    written = [body for head, body in message_parts(raw)
               if b"Content-Disposition: attachment" in head]
    for part, body, (path, content) in zip(got, written, stored, strict=True):
        kind, expected = expected_part(path, content)
        assert part.get_content_type() == kind
        if kind == "message/rfc822":  # the email package parses it: compare what was sent
            assert body == expected
        else:
            assert part.get_payload(decode=True) == expected
