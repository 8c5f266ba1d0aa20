"""Address lists: read strictly into (display name, address) pairs, or refused with a hint.

What a mail reader could take two ways (a comment, a group, a stray quote or semicolon) is
refused rather than guessed at: a guess that splits one address in two sends mail to the
wrong place.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbatch import load_job
from mailbatch.errors import JobError
from mailbatch.job import addresses
from mailbatch.job.addresses import (
    Address,
    AddressError,
    is_valid_address,
    parse_addresses,
    tidy_name,
)
from tests.pipeline import offline_job

LONG = "ACME Reporting (Northern Europe, Middle East & Africa) - Sales Operations Team"


@pytest.mark.parametrize("text, pairs", [
    ("anne@example.org", [("", "anne@example.org")]),
    ("Anne Smith <anne@example.org>", [("Anne Smith", "anne@example.org")]),
    ("<anne@example.org>", [("", "anne@example.org")]),
    ('"Smith (Sales)" <s@example.com>', [("Smith (Sales)", "s@example.com")]),
    (f'"{LONG}" <x@example.com>', [(LONG, "x@example.com")]),
    ('"Doe, J.; Team: A" <j@example.org>, b@example.org',
     [("Doe, J.; Team: A", "j@example.org"), ("", "b@example.org")]),
    ('"Say \\"hi\\" \\\\ bye" <a@example.org>', [('Say "hi" \\ bye', "a@example.org")]),
    ("Änne Müller <a@example.org>, 李小龍 <l@example.org>",
     [("Änne Müller", "a@example.org"), ("李小龍", "l@example.org")]),
    ("Dr. Anne   Smith <a@example.org>", [("Dr. Anne Smith", "a@example.org")]),
    ('"  Anne  " <a@example.org>', [("Anne", "a@example.org")]),
    ("=?utf-8?q?Bob?= <b@example.org>", [("=?utf-8?q?Bob?=", "b@example.org")]),
    (" , a@example.org,, b@example.org , ", [("", "a@example.org"), ("", "b@example.org")]),
    ("", []),
])
def test_plain_mailbox_lists_read_as_pairs_with_names_as_literal_text(text, pairs):
    assert parse_addresses(text) == tuple(Address(*pair) for pair in pairs)


@pytest.mark.parametrize("text, hint", [
    ("Smith (Sales) <s@example.com>", 'put the name in quotes, e.g. "Smith (Sales)"'),
    ("a@example.org (Anne)", "parentheses outside double quotes"),
    ("Team: a@example.org, b@example.org;", "a group (name: addresses;)"),
    ("undisclosed-recipients:;", "a group"),
    ("a@example.org; b@example.org", "separate addresses with commas"),
    ("Smith, John <j@example.org>", "a name containing a comma must be in double quotes"),
    ("Anne Smith", "has a name but no <address>"),
    ("a@example.org b@example.org", "separate addresses with commas"),
    ('"Anne <a@example.org>', "a double quote is not closed"),
    ("Anne <a@example.org", "a '<' without its '>'"),
    ("Anne <a@example.org> x", "after <a@example.org>"),
    ("Anne <anne(at)example.org>", "'anne(at)example.org' in 'Anne <anne(at)example.org>' is not"),
    ("Anne <änne@example.org>", "needs SMTPUTF8, which mailbatch does not use"),
    ("An\x1bne <a@example.org>", "control character"),
    ('"Anne\tB" <a@example.org>', "control character"),
])
def test_anything_a_reader_could_read_another_way_is_refused_with_what_to_write(text, hint):
    with pytest.raises(AddressError) as caught:
        parse_addresses(text)

    assert hint in str(caught.value)


names = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=60)
emails = st.sampled_from(["a@example.org", "o'brien+x@mail.example.co.uk", "x_y.z@d-1.io"])


@settings(max_examples=300, deadline=None)
@given(mailboxes=st.lists(st.builds(Address, names.map(tidy_name), emails), max_size=4))
def test_any_list_written_for_people_reads_back_as_the_same_pairs(mailboxes):
    """str(Address) is how preview, check and error lines show a mailbox; read back, it is
    the same pair, whatever the name holds (quotes, backslashes, commas, look-alikes)."""
    text = ", ".join(str(mailbox) for mailbox in mailboxes)

    assert parse_addresses(text) == tuple(mailboxes)


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(st.text(st.sampled_from('ab@.,;:()<>"\\ \t=?é\xa0'), max_size=40),
                      st.from_regex(r" ?([a-zé.@]+ ?){0,3}<?[a-z.]+@[a-z]+\.org>? ?",
                                    fullmatch=True)))
def test_any_text_gives_valid_pairs_or_an_address_error_and_the_shortcut_agrees(text):
    try:
        mailboxes = parse_addresses(text)
    except AddressError as err:
        assert str(err)
        with pytest.raises(AddressError):
            addresses._parse(text)
        return
    assert all(is_valid_address(m.address) and m.name == tidy_name(m.name) for m in mailboxes)
    assert addresses._parse(text) == mailboxes  # the usual value is read at once


VALID = """
    from: "Reports <reports@example.org>"
    subject: Hi
    text: "Hi\\n"
    recipients: [{email: anne@example.org}]
"""


def test_the_from_key_reads_as_one_pair_with_specials_in_a_quoted_name(tmp_path):
    job = load_job(offline_job(tmp_path, VALID.replace(
        '"Reports <reports@example.org>"', f"'\"{LONG}\" <reports@example.org>'")))

    assert job.mailbox == Address(LONG, "reports@example.org")
    assert job.sender_address == "reports@example.org"


@pytest.mark.parametrize("sender, words", [
    ('"Team: a@example.org, b@example.org;"', "a group"),
    ('"a@example.org, b@example.org"', "must be one email address"),
    ('"Sales (Reports) <reports@example.org>"', "parentheses outside double quotes"),
])
def test_a_from_key_with_a_group_a_list_or_a_comment_is_a_job_error(tmp_path, sender, words):
    with pytest.raises(JobError) as caught:
        load_job(offline_job(tmp_path, VALID.replace('"Reports <reports@example.org>"',
                                                     sender)))

    assert caught.value.field == "from"
    assert words in str(caught.value)
