"""What arrives at the server is standards-correct and decodes to exactly what was rendered.

Every check parses the received bytes back with the email package (policy.default): the byte
layout (boundaries, folding, encodings) is free to change, the decoded content is not.
"""

from __future__ import annotations

import datetime as dt
import os

import pytest

from mailbatch.errors import EXIT_OK
from tests.pipeline import SENDER_ADDRESS, make_job, outline, parse, read_report, run_cli

TEXT_TEMPLATE = """\
Hello {{ name }},

.this line starts with a dot, and the next one is just a dot
.
Totals for {{ region }}: {{ data.totals[region] }} €  (tab:\t)
{{ "ab" * 600 }}
--\x20
Sales
"""
HTML_TEMPLATE = """\
<html><body>
<p>Hello {{ name }},</p>
<p>Totals for {{ region }}: {{ data.totals[region] }} €</p>
</body></html>
"""
PEOPLE = """\
email,name,region
anne@example.org,Änne Müller,north
bob@example.org,"O'Brien, Bob",south
"""
TOTALS = '{"north": "1.234", "south": "5.678"}'
BINARY = bytes(range(256)) * 40 + b"\r\n.\r\n.\n\r\x00--boundary--\r\n"
NORTH_PDF = b"%PDF-1.4 north " + os.urandom(3000)
SOUTH_PDF = b"%PDF-1.4 south " + os.urandom(100)
CSV_DATA = b"region;total\nnorth;1.234\n"

FULL_JOB = """
    from: "Büro Müller <reports@example.org>"
    reply_to: "Sales Team <sales@example.org>"
    subject: "Grüße, {{ name }}: Zahlen für {{ region }} ✓"
    text_template: templates/report.txt.j2
    html_template: templates/report.html.j2
    cc: "Head Office <head@example.org>"
    bcc: audit@example.org
    headers:
      X-Report-Region: "{{ region }} \u2013 Größe"
    recipients: people.csv
    data:
      totals: totals.json
    attachments:
      - "reports/{{ region }}/*.pdf"
      - shared/figures.bin
      - shared/notes.mbqz
      - shared/LICENSE
      - pattern: shared/table.dat
        type: text/csv
"""
FULL_FILES = {
    "templates/report.txt.j2": TEXT_TEMPLATE,
    "templates/report.html.j2": HTML_TEMPLATE,
    "people.csv": PEOPLE,
    "totals.json": TOTALS,
    "reports/north/Übersicht Nord é.pdf": NORTH_PDF,
    "reports/south/south.pdf": SOUTH_PDF,
    "shared/figures.bin": BINARY,
    "shared/notes.mbqz": b"no type known for this extension",
    "shared/LICENSE": b"no extension at all",
    "shared/table.dat": CSV_DATA,
}


def expected_text(name: str, region: str, total: str) -> str:
    return (f"Hello {name},\n\n.this line starts with a dot, and the next one is just a dot\n"
            f".\nTotals for {region}: {total} €  (tab:\t)\n{'ab' * 600}\n-- \nSales\n")


def expected_html(name: str, region: str, total: str) -> str:
    return (f"<html><body>\n<p>Hello {name},</p>\n<p>Totals for {region}: {total} €</p>\n"
            "</body></html>\n")


@pytest.fixture
def full_batch(tmp_path, smtp_server, ca_file, password_env, capsys):
    """The full job sent once; returns the messages as received, in order."""
    job = make_job(tmp_path, smtp_server, ca_file, FULL_JOB, FULL_FILES)
    code, err = run_cli(capsys, str(job))
    assert code == EXIT_OK, err
    return smtp_server.messages


def test_text_and_html_bodies_arrive_as_multipart_alternative_decoding_to_the_rendered_text(
        full_batch):
    anne, bob = (parse(m.data) for m in full_batch)

    assert anne.get_content_type() == "multipart/mixed"
    alternative = next(anne.iter_parts())
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain",
                                                                       "text/html"]
    assert outline(anne)["text"] == expected_text("Änne Müller", "north", "1.234")
    assert outline(anne)["html"] == expected_html("Änne Müller", "north", "1.234")
    assert outline(bob)["text"] == expected_text("O'Brien, Bob", "south", "5.678")
    assert outline(bob)["html"] == expected_html("O&#39;Brien, Bob", "south", "5.678")


def test_attachments_arrive_byte_identical_with_guessed_explicit_and_fallback_types(
        full_batch):
    anne, bob = (outline(parse(m.data)) for m in full_batch)

    shared = [
        ("figures.bin", "application/octet-stream", BINARY),
        ("notes.mbqz", "application/octet-stream", b"no type known for this extension"),
        ("LICENSE", "application/octet-stream", b"no extension at all"),
        ("table.dat", "text/csv", CSV_DATA),
    ]
    assert anne["attachments"] == [("Übersicht Nord é.pdf", "application/pdf", NORTH_PDF),
                                   *shared]
    assert bob["attachments"] == [("south.pdf", "application/pdf", SOUTH_PDF), *shared]


def test_attachment_names_and_sizes_are_in_the_report(full_batch, tmp_path):
    report, rows = read_report(tmp_path)

    anne = report["recipients"][0]
    assert [(a["name"], a["size"]) for a in anne["attachments"]] == [
        ("Übersicht Nord é.pdf", len(NORTH_PDF)), ("figures.bin", len(BINARY)),
        ("notes.mbqz", 32), ("LICENSE", 19), ("table.dat", len(CSV_DATA))]
    assert f"Übersicht Nord é.pdf ({len(NORTH_PDF)} bytes)" in rows[0]["attachments"]


def test_date_message_id_with_the_sender_domain_and_mime_version_are_present(full_batch,
                                                                             tmp_path):
    messages = [parse(m.data) for m in full_batch]
    report, _ = read_report(tmp_path)

    for message, row in zip(messages, report["recipients"], strict=True):
        assert message["MIME-Version"] == "1.0"
        date = message["Date"].datetime
        assert isinstance(date, dt.datetime) and date.tzinfo is not None
        message_id = message["Message-ID"]
        assert message_id.startswith("<") and message_id.endswith("@example.org>")
        assert message_id == row["message_id"]
    assert len({m["Message-ID"] for m in messages}) == len(messages)


def test_non_ascii_subject_display_names_and_file_name_are_encoded_and_decode_back(full_batch):
    anne = full_batch[0]
    message = parse(anne.data)

    assert anne.data.isascii(), "a 7-bit message needs no SMTPUTF8 or 8BITMIME"
    assert message["Subject"] == "Grüße, Änne Müller: Zahlen für north ✓"
    assert message["From"].addresses[0].display_name == "Büro Müller"
    assert message["From"].addresses[0].addr_spec == SENDER_ADDRESS
    assert message["To"].addresses[0].display_name == "Änne Müller"
    assert message["To"].addresses[0].addr_spec == "anne@example.org"
    assert message["X-Report-Region"] == "north \u2013 Größe"
    assert next(message.iter_attachments()).get_filename() == "Übersicht Nord é.pdf"


def test_display_name_with_a_comma_stays_one_address(full_batch):
    bob = parse(full_batch[1].data)

    assert [(a.display_name, a.addr_spec) for a in bob["To"].addresses] == [
        ("O'Brien, Bob", "bob@example.org")]


def test_bcc_gets_the_message_without_a_bcc_header_and_cc_is_both_header_and_recipient(
        full_batch):
    for received, address in zip(full_batch, ["anne@example.org", "bob@example.org"],
                                 strict=True):
        message = parse(received.data)
        assert received.rcpt_tos == [address, "head@example.org", "audit@example.org"]
        assert "Bcc" not in message
        assert b"audit@example.org" not in received.data
        assert [a.addr_spec for a in message["Cc"].addresses] == ["head@example.org"]
        assert message["Cc"].addresses[0].display_name == "Head Office"
        assert message["Reply-To"].addresses[0].addr_spec == "sales@example.org"


def test_messages_parse_without_defects_with_crlf_lines_of_legal_length(full_batch):
    for received in full_batch:
        message = parse(received.data)
        assert message.defects == []
        assert all(part.defects == [] for part in message.walk())
        lines = received.data.split(b"\r\n")
        assert b"\n" not in b"".join(lines) and b"\r" not in b"".join(lines)
        assert max(len(line) for line in lines) <= 998


@pytest.mark.parametrize("bodies, top_type, parts, expected", [
    ('text: "Only text, Grüße\\n"', "text/plain", [], ("Only text, Grüße\n", None)),
    # HTML alone gets a text part made from it: a lone text/html part reads badly in text
    # clients and is a spam signal (MIME_HTML_ONLY)
    ('html: "<p>Only <b>html</b>, Grüße</p>\\n"', "multipart/alternative",
     ["text/plain", "text/html"], ("Only html, Grüße\n", "<p>Only <b>html</b>, Grüße</p>\n")),
    ('text: "Text\\n"\n    html: "<p>Html</p>\\n"', "multipart/alternative",
     ["text/plain", "text/html"], ("Text\n", "<p>Html</p>\n")),
])
@pytest.mark.parametrize("attach", [False, True])
def test_text_only_html_only_and_both_give_the_right_structure(
        tmp_path, smtp_server, ca_file, password_env, capsys, bodies, top_type, parts, expected,
        attach):
    job = make_job(tmp_path, smtp_server, ca_file, f"""
    from: reports@example.org
    subject: Structure
    {bodies}
    recipients: [{{email: anne@example.org}}]
    attachments: {'[a.pdf]' if attach else '[]'}
    """, {"a.pdf": b"%PDF"})

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_OK, err
    message = parse(smtp_server.messages[0].data)
    body = next(message.iter_parts()) if attach else message
    assert message.get_content_type() == ("multipart/mixed" if attach else top_type)
    assert body.get_content_type() == top_type
    assert [p.get_content_type() for p in body.iter_parts()] == parts
    assert message["MIME-Version"] == "1.0"
    assert (outline(message)["text"], outline(message)["html"]) == expected
    assert [a.get_filename() for a in message.iter_attachments()] == (["a.pdf"] if attach
                                                                        else [])


def test_an_empty_attachment_arrives_as_an_empty_file(tmp_path, smtp_server, ca_file,
                                                      password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, """
    from: reports@example.org
    subject: Empty
    text: "See attached.\\n"
    recipients: [{email: anne@example.org}]
    attachments: [empty.txt]
    """, {"empty.txt": b""})

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_OK, err
    message = parse(smtp_server.messages[0].data)
    assert outline(message)["attachments"] == [("empty.txt", "text/plain", b"")]
    assert all(part.defects == [] for part in message.walk())


def test_a_blank_per_recipient_cc_adds_no_cc_and_a_long_non_ascii_file_name_decodes(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    long_name = "Übersicht " * 12 + "Größe.pdf"
    job = make_job(tmp_path, smtp_server, ca_file, """
    from: reports@example.org
    subject: Copies
    text: "x\\n"
    cc: "{{ assistant }}"
    recipients:
      - {email: anne@example.org, assistant: "Asst <asst@example.org>"}
      - {email: bob@example.org, assistant: ""}
    attachments: ["files/*"]
    """, {f"files/{long_name}": b"%PDF long"})

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_OK, err
    anne, bob = smtp_server.messages
    assert anne.rcpt_tos == ["anne@example.org", "asst@example.org"]
    assert [a.addr_spec for a in parse(anne.data)["Cc"].addresses] == ["asst@example.org"]
    assert bob.rcpt_tos == ["bob@example.org"]
    assert "Cc" not in parse(bob.data)
    for received in (anne, bob):
        assert outline(parse(received.data))["attachments"] == [
            (long_name, "application/pdf", b"%PDF long")]
        assert max(len(line) for line in received.data.split(b"\r\n")) <= 78


def test_an_address_named_in_to_cc_and_bcc_is_one_envelope_recipient_so_it_gets_one_copy(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, """
    from: reports@example.org
    subject: Copies
    text: "x\\n"
    cc: "Head <HEAD@example.org>, {{ email }}"
    bcc: "head@example.org"
    recipients:
      - {email: anne@example.org}
    """)

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_OK, err
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["anne@example.org", "HEAD@example.org"]
    assert [a.addr_spec for a in parse(received.data)["Cc"].addresses] == [
        "HEAD@example.org", "anne@example.org"]
    report, _ = read_report(tmp_path)
    assert report["recipients"][0]["bcc"] == ["head@example.org"]  # as written, one RCPT
