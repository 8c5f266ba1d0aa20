"""Addresses beyond ASCII: a domain in Unicode goes out in its IDNA form; anything that would
need SMTPUTF8 (which mailbatch does not use: every message is 7-bit) is refused, saying why."""

from __future__ import annotations

import pytest

from mailbatch.errors import EXIT_DATA, EXIT_OK
from mailbatch.job.addresses import AddressError, ascii_address, parse_addresses
from tests.pipeline import make_job, run_cli


@pytest.mark.parametrize(("given", "sent"), [
    ("jose@exämple.com", "jose@xn--exmple-cua.com"),
    ("ann@ÉXAMPLE.org", "ann@xn--xample-9ua.org"),
    ("ann@example.org", "ann@example.org"),
    ("bob@bücher.例え.jp", "bob@xn--bcher-kva.xn--r8jz45g.jp"),
])
def test_a_unicode_domain_is_sent_in_its_idna_form(given, sent):
    assert ascii_address(given) == sent


@pytest.mark.parametrize(("given", "words"), [
    ("josé@example.com", "needs SMTPUTF8"),
    ("info@straße.de", "would be sent as 'strasse.de'"),
])
def test_what_would_need_smtputf8_or_change_the_domain_is_refused_saying_why(given, words):
    with pytest.raises(AddressError, match=words):
        ascii_address(given)


def test_an_address_list_reads_unicode_domains_as_they_are_sent():
    assert parse_addresses("José <jose@exämple.com>, b@example.org") == (
        ("José", "jose@xn--exmple-cua.com"), ("", "b@example.org"))


def test_recipients_with_unicode_domains_are_delivered_and_others_refused_before_sending(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, """
    from: reports@example.org
    subject: Hi
    text: "x\\n"
    recipients:
      - {email: jose@exämple.com, name: José}
    """)

    assert run_cli(capsys, str(job))[0] == EXIT_OK
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["jose@xn--exmple-cua.com"]
    assert received.message["To"].addresses[0].addr_spec == "jose@xn--exmple-cua.com"

    job.write_text(job.read_text().replace("jose@exämple.com", "josé@example.com"),
                   encoding="utf-8")
    smtp_server.reset()
    code, err = run_cli(capsys, str(job))
    assert code == EXIT_DATA and "needs SMTPUTF8" in err
    assert smtp_server.connections == 0
