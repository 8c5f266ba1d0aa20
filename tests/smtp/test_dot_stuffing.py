"""Dot-stuffing (RFC 5321 4.5.2): a line that starts with "." must not end the message early."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbatch.cli.main import main
from mailbatch.errors import EXIT_OK
from mailbatch.smtp.wire import dot_stuff as _dot_stuff
from tests.helpers import smtp_block, write_job

LINES = st.lists(st.sampled_from([b"", b".", b"..", b".x", b"x.", b"a.b", b"text", b" ."]),
                 max_size=30)


def unstuff(wire: bytes) -> bytes:
    """What a server stores: every line-leading dot removed once."""
    lines = wire.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


@given(LINES)
def test_every_line_leading_dot_is_doubled_and_the_server_reads_the_message_back(lines):
    data = b"\r\n".join(lines) + b"\r\n"

    wire = _dot_stuff(data)

    assert b"\r\n.\r\n" not in b"\r\n" + wire  # the body never ends early
    assert unstuff(wire) == data


@pytest.mark.parametrize("dots_before", [0, 10, 5000])
def test_a_dot_line_after_a_large_base64_part_is_still_stuffed(dots_before):
    # Many dots that do not start a line, then megabytes without any, then one that does.
    encoded = base64.encodebytes(bytes(range(256)) * 8192).replace(b"\n", b"\r\n")
    data = b"a.b " * dots_before + b"\r\n" + encoded + b".\r\n"

    wire = _dot_stuff(data)

    assert wire.endswith(b"\r\n..\r\n")
    assert unstuff(wire) == data


def test_a_message_without_line_leading_dots_is_sent_as_it_is():
    data = b"Subject: x\r\n\r\nNo dot starts a line. Not even this one.\r\n"

    assert _dot_stuff(data) is data


def test_lines_that_start_with_dots_arrive_as_written(smtp_server, ca_file, tmp_path,
                                                      password_env):
    body = "Totals\n.\n..two dots\n.hidden?\nend\n"
    job = write_job(tmp_path, smtp_block(smtp_server, ca_file)
                    + "from: reports@example.org\nsubject: Totals\ntext_template: body.txt\n"
                    + "recipients:\n  - {email: ada@example.org}\n", {"body.txt": body})

    assert main(["run", "-q", str(job)]) == EXIT_OK

    [received] = smtp_server.wait_for(1)
    assert received.message.get_content().replace("\r\n", "\n") == body
