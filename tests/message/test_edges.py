"""Messages correct at the edges: one regression test for each fault an outside fuzzer found.

Each composes a message, checks the wire rules (tests/mailcheck.py) and reads it back with
the email package, the way a mail reader would.
"""

from __future__ import annotations

import re

import pytest

from mailbatch import load_job
from mailbatch.job.addresses import Address
from mailbatch.job.recipients import iter_recipients
from mailbatch.message.attachments import find
from mailbatch.message.compose import compose
from mailbatch.message.parts import AttachmentCache
from mailbatch.message.render import Renderer, RenderFailure
from tests.mailcheck import (
    addresses,
    message_parts,
    parse,
    rendered,
    strict_addresses,
    wire_problems,
)
from tests.pipeline import offline_job

DATE = "Mon, 02 Jun 2025 09:30:00 +0200"
LONG = "ACME Reporting (Northern Europe, Middle East & Africa) - Sales Operations Team"


def composed(**fields: object) -> bytes:
    data = compose(rendered(**fields), AttachmentCache(), DATE)
    assert wire_problems(data) == []
    return data


def render_one(tmp_path, job: str, recipient: str) -> bytes:
    """The first recipient's message, rendered from a job file and composed."""
    path = offline_job(tmp_path, f"""
    from: "Reports <reports@example.org>"
    subject: Report
    text: "Hi\\n"
    {job}
    recipients:
      - {recipient}
    """)
    loaded = load_job(path)
    message = Renderer(loaded).render(next(iter_recipients(loaded)))
    data = compose(message, AttachmentCache(), DATE)
    assert wire_problems(data) == []
    return data


# -- address headers: written from pairs, never by the email package's folder ----------------

@pytest.mark.parametrize("mailboxes", [
    [(LONG, "x@example.com")],
    [("ACME; Sales, Team (North) - a rather long name indeed", "y@example.com")],
    [("Smith (Sales)", "s@example.com"), ("Doe, J.", "j@example.com"),
     ("Team: North;", "t@example.com")],
    [("A " + "x" * 77 + ")", "long-address-" + "a" * 40 + "@example.com"),
     ("B", "b@example.com")],
    [("Sales Reporting: " + "Nord, " * 12, "n@example.com")],
])
def test_quoted_names_with_specials_keep_their_quotes_and_every_address(mailboxes):
    to = tuple(Address(*pair) for pair in mailboxes)

    message = parse(composed(to=to, cc=to, sender=to[0]))

    for name in ("To", "Cc"):
        assert addresses(message, name) == mailboxes
    assert addresses(message, "From") == mailboxes[:1]
    assert [p.get_content_type() for p in message.walk()] == ["text/plain"]
    assert message["Subject"] == "Weekly sales"  # not pushed into the body by a blank line


def test_a_long_from_with_a_colon_is_not_written_as_a_group():
    sender = Address("Reports: Weekly Sales Figures for the Northern Region and Partners",
                     "reports@example.org")

    data = composed(sender=sender)

    assert addresses(parse(data), "From") == [tuple(sender)]
    assert b";" not in data.split(b"\r\nTo:")[0]


def test_a_comma_between_addresses_is_never_encoded():
    cc = (Address("Ünïcode, Name", "a@example.org"), Address("Plain", "b@example.org"))

    data = composed(cc=cc)

    assert b"=2C?= <" not in data and b"=?utf-8?q?=2C?=" not in data
    assert addresses(parse(data), "Cc") == [tuple(m) for m in cc]


# -- fault 1: a name that looks like an encoded-word -----------------------------------------

@pytest.mark.parametrize("name", ["=?utf-8?q?Bob?=", "=?UTF-8?B?Qm9i?= Smith", "x =?y?= z"])
def test_a_display_name_that_looks_like_an_encoded_word_reads_back_as_written(name):
    data = composed(to=(Address(name, "bob@example.org"),))

    assert addresses(parse(data), "To") == [(name, "bob@example.org")]


def test_a_recipient_name_that_looks_like_an_encoded_word_travels_as_a_pair(tmp_path):
    data = render_one(tmp_path, "", '{email: bob@example.org, name: "=?utf-8?q?Bob?="}')

    assert addresses(parse(data), "To") == [("=?utf-8?q?Bob?=", "bob@example.org")]


def test_a_templated_to_with_an_encoded_word_look_alike_keeps_it_literal(tmp_path):
    data = render_one(tmp_path, "to: '\"{{ name }}\" <{{ email }}>'",
                      '{email: bob@example.org, name: "=?utf-8?q?Bob?="}')

    assert addresses(parse(data), "To") == [("=?utf-8?q?Bob?=", "bob@example.org")]


# -- fault 2: header lines over 998 octets ---------------------------------------------------

@pytest.mark.parametrize("fields, check", [
    ({"subject": "a" + " " * 1000 + "b"}, lambda m: m["Subject"] == "a" + " " * 1000 + "b"),
    ({"to": (Address('"' * 500, "q@example.org"),)},
     lambda m: strict_addresses(m, "To") == [('"' * 500, "q@example.org")]),
    ({"to": (Address("\\" * 400 + '"' * 400, "q@example.org"),)},
     lambda m: strict_addresses(m, "To") == [("\\" * 400 + '"' * 400, "q@example.org")]),
    ({"headers": (("X-" + "L" * 74, "w" * 990),)}, lambda m: m["X-" + "L" * 74] == "w" * 990),
    ({"headers": (("X-" + "L" * 74, "w" * 500 + " " + "v" * 500),)},
     lambda m: m["X-" + "L" * 74] == "w" * 500 + " " + "v" * 500),
    ({"subject": "\t" * 1200}, lambda m: m["Subject"] == "\t" * 1200),
])
def test_no_header_line_reaches_998_octets_and_every_value_reads_back(fields, check):
    data = composed(**fields)

    assert max(map(len, data.split(b"\r\n"))) <= 998
    assert check(parse(data))


def test_a_header_line_that_cannot_fit_998_octets_is_a_render_failure_naming_the_recipient():
    """Only an extra header name longer than the job file allows gets here; the check is on
    the final bytes, so nothing else can slip past it either."""
    message = rendered(headers=(("X-" + "N" * 1000, "value"),))

    with pytest.raises(RenderFailure) as caught:
        compose(message, AttachmentCache(), DATE)

    assert "people.csv:2 (anne@example.org)" in str(caught.value)
    assert "over the limit of 998" in str(caught.value)


def test_text_that_is_not_unicode_is_a_render_failure_not_a_traceback():
    with pytest.raises(RenderFailure) as caught:
        compose(rendered(subject="lone \ud800 surrogate"), AttachmentCache(), DATE)

    assert "(anne@example.org)" in str(caught.value) and "surrogate" in str(caught.value)


# -- fault 3: quoted-printable lines of 77 characters -----------------------------------------

@pytest.mark.parametrize("end", [" ", "\t"])
@pytest.mark.parametrize("length", [73, 74, 75, 76, 150, 151])
def test_a_quoted_printable_line_ending_in_a_space_or_tab_stays_within_76(end, length):
    text = "Grüße\n" + "x" * (length - 1) + end + "\n" + "y" * (length - 1) + end
    data = composed(text=text)

    assert b"quoted-printable" in data
    assert parse(data).get_content().replace("\r\n", "\n") == text + "\n"


# -- fault 4: messages attached as message/rfc822, never base64 -------------------------------

FORWARDED = (b"From: Anne <anne@example.org>\r\nTo: b@example.org\r\nSubject: Q3 figures\r\n"
             b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
             b"See the numbers.\r\n.\r\nFrom the desk of Anne\r\n")


@pytest.mark.parametrize("name", ["forwarded.eml", "page.mht", "page.MHTML",
                                  ("forwarded.msgfile", "message/rfc822")])
def test_an_attached_message_is_message_rfc822_in_7bit_and_readable(tmp_path, name):
    data = composed(**{"tmp_path": tmp_path, "files": {name: FORWARDED}})

    (part,) = parse(data).iter_attachments()
    assert part.get_content_type() == "message/rfc822"
    assert part["Content-Transfer-Encoding"] == "7bit"
    inner = part.get_content()
    assert inner["Subject"] == "Q3 figures"
    assert inner.get_content() == "See the numbers.\r\n.\r\nFrom the desk of Anne\r\n"
    assert [body for head, body in message_parts(data) if b"rfc822" in head] == [FORWARDED]


def test_an_attached_message_with_lf_line_ends_travels_with_crlf(tmp_path):
    data = composed(tmp_path=tmp_path, files={"lf.eml": FORWARDED.replace(b"\r\n", b"\n")})

    assert [body for head, body in message_parts(data) if b"rfc822" in head] == [FORWARDED]


@pytest.mark.parametrize("content", [
    FORWARDED + "Grüße\r\n".encode(),  # 8-bit: would need 8BITMIME
    FORWARDED + b"x" * 999 + b"\r\n",  # a line over 998 octets
    FORWARDED.replace(b"\r\nSee", b"\rSee"),  # a lone CR
    b"not a message at all\r\n",
    b"Content-Type: multipart/mixed\r\n\r\nno boundary\r\n",  # a reader sees a defect
    b"",
])
def test_an_attached_message_that_cannot_travel_as_it_is_goes_as_octet_stream(tmp_path,
                                                                              content):
    data = composed(tmp_path=tmp_path, files={"odd.eml": content})

    (part,) = parse(data).iter_attachments()
    assert part.get_content_type() == "application/octet-stream"
    assert part.get_filename() == "odd.eml"
    assert part.get_payload(decode=True) == content


@pytest.mark.parametrize("content, sent_as", [
    (FORWARDED, "message/rfc822"),
    (FORWARDED + "Grüße\r\n".encode(), "application/octet-stream"),
    (b"not a message at all\r\n", "application/octet-stream"),
])
def test_the_report_names_the_type_an_attached_message_is_sent_as(tmp_path, content, sent_as):
    (tmp_path / "odd.eml").write_bytes(content)

    (found,) = find("odd.eml", tmp_path)

    assert found.content_type == sent_as  # the report's "type" is this


def test_a_multipart_type_given_for_a_file_is_sent_as_octet_stream(tmp_path):
    data = composed(tmp_path=tmp_path, files={("a.bin", "multipart/related"): b"--x--\r\n"})

    (part,) = parse(data).iter_attachments()
    assert part.get_content_type() == "application/octet-stream"
    assert all(p.defects == [] for p in parse(data).walk())


def test_the_boundary_never_occurs_in_an_attached_message(tmp_path, monkeypatch):
    import mailbatch.message.compose as module

    draws = iter([int("11" * 12, 16), int("22" * 12, 16)])
    monkeypatch.setattr(module._RANDOM, "getrandbits", lambda n: next(draws))
    taken = b"--=_" + b"11" * 12
    content = FORWARDED + taken + b"\r\n"

    data = composed(tmp_path=tmp_path, files={"m.eml": content})

    assert b'boundary="=_' + b"22" * 12 + b'"' in data
    assert [body for head, body in message_parts(data) if b"rfc822" in head] == [content]


# -- fault 5: file names that look like encoded-words -----------------------------------------

@pytest.mark.parametrize("name", ["=?utf-8?q?x?=.pdf", "report =?iso-8859-1?b?QQ==?=.txt"])
def test_a_file_name_holding_an_encoded_word_look_alike_uses_rfc_2231(tmp_path, name):
    data = composed(tmp_path=tmp_path, files={name: b"%PDF"})

    (part,) = parse(data).iter_attachments()
    assert part.get_filename() == name
    assert re.search(rb"filename\*=utf-8''", data)
    assert b'filename="' not in data


def test_a_file_name_that_is_not_utf_8_is_an_attachment_problem_not_a_traceback(tmp_path):
    import os

    from mailbatch.message.attachments import Attachment, AttachmentProblem

    path = tmp_path / os.fsdecode(b"caf\xe9.pdf")
    path.write_bytes(b"%PDF")
    message = rendered(attachments=(Attachment(path, path.name, "application/pdf", 4),))

    with pytest.raises(AttachmentProblem) as caught:
        compose(message, AttachmentCache(), DATE)

    assert "not valid UTF-8; rename the file" in str(caught.value)


# -- the rule for lines holding encoded-words ------------------------------------------------

def test_lines_holding_encoded_words_stay_within_76_characters():
    data = composed(subject="Grüße aus Köln, Düsseldorf und München " * 6,
                    to=(Address("Müller-Lüdenscheidt " * 6, "m@example.org"),),
                    headers=(("X-" + "Lang" * 10, "Ünïcödé " * 20),))

    for line in data.split(b"\r\n\r\n")[0].split(b"\r\n"):
        if b"=?" in line:
            assert len(line) <= 76, line
