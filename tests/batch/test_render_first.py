"""Render everything first: whatever depends on recipient data fails in the render pass, before
the first message is sent, in check, a dry run and a real run alike; and a dry run or a test
send never opens a connection it does not need, nor reads the secret for a notify summary."""

from __future__ import annotations

import json
import logging
import os

import pytest

from mailbatch import load_job
from mailbatch.batch.runner import RunOptions, run
from mailbatch.cli.main import main
from mailbatch.errors import EXIT_DATA, EXIT_OK, EXIT_PARTIAL
from tests.pipeline import make_job, read_report, run_cli

HEAD = """
    from: reports@example.org
    subject: "Report for {{ name }}"
    text: "Hello {{ name }}\\n"
"""


@pytest.mark.parametrize("command", ["check", "run --dry-run", "run"])
def test_a_to_that_renders_empty_for_one_recipient_fails_before_anything_is_sent(
        tmp_path, smtp_server, ca_file, password_env, capsys, command):
    job = make_job(tmp_path, smtp_server, ca_file, HEAD + 'to: "{{ manager }}"\n'
                   "recipients:\n  - {email: ann@example.org, name: Ann, manager: m@example.org}\n"
                   "  - {email: bob@example.org, name: Bob, manager: ''}\n")
    capsys.readouterr()
    code = main([*command.split(), str(job)])
    err = capsys.readouterr().err
    assert code == EXIT_DATA, err
    assert "(bob@example.org): to renders empty" in err
    assert smtp_server.messages == [] and smtp_server.connections == 0


NOT_UTF8 = os.fsdecode(b"r\xe9sum\xe9.pdf")  # a Latin-1 name: undecodable as UTF-8


@pytest.mark.skipif(os.fsencode(NOT_UTF8) != b"r\xe9sum\xe9.pdf",
                    reason="file names are not bytes here")
@pytest.mark.parametrize("command", ["check", "run"])
def test_an_attachment_name_that_is_not_utf8_is_refused_in_the_render_pass(
        tmp_path, smtp_server, ca_file, password_env, capsys, command):
    job = make_job(tmp_path, smtp_server, ca_file, HEAD + "recipients:\n"
                   "  - {email: ann@example.org, name: Ann, dir: a}\n"
                   "  - {email: bob@example.org, name: Bob, dir: b}\n"
                   "attachments: ['files/{{ dir }}/*.pdf']\n",
                   {"files/a/report.pdf": b"%PDF a"})
    (tmp_path / "files" / "b").mkdir()
    (tmp_path / "files" / "b" / NOT_UTF8).write_bytes(b"%PDF b")
    capsys.readouterr()
    code = main([*command.split(), str(job)])
    err = capsys.readouterr().err
    assert code == EXIT_DATA, err
    assert "(bob@example.org): attachment" in err and "not valid UTF-8" in err
    assert "r\\xe9sum\\xe9.pdf" in err
    assert smtp_server.messages == []
    assert not (tmp_path / "reports").exists()


def test_a_lone_surrogate_in_recipient_data_is_refused_where_it_is_written(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    people = [{"email": "ann@example.org", "name": "Ann \U0001F600"},
              {"email": "bob@example.org", "name": "Bob"}]
    text = json.dumps(people, indent=1).replace('"Bob"', '"Bob \\ud800"')
    job = make_job(tmp_path, smtp_server, ca_file, HEAD + "recipients: people.json\n",
                   {"people.json": text})
    code, err = run_cli(capsys, str(job))
    assert code == 78, err
    assert "people.json:8: \\ud800 is half of a surrogate pair" in err
    assert smtp_server.messages == []


def test_text_a_template_makes_that_cannot_be_encoded_fails_in_the_render_pass(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file,
                   HEAD.replace("Report for", "{{ '\\\\ud800' if name == 'Bob' else '' }}")
                   + "recipients: [{email: ann@example.org, name: Ann}, "
                   "{email: bob@example.org, name: Bob}]\n")
    code, err = run_cli(capsys, str(job))
    assert code == EXIT_DATA, err
    assert "(bob@example.org): " in err and "'\\ud800', which is not a valid character" in err
    assert smtp_server.messages == []


def test_an_attachment_that_vanished_before_sending_is_failed_and_named_on_stderr(
        tmp_path, smtp_server, ca_file, password_env, caplog):
    # The send loop composes two messages ahead of the one it sends: the fourth is composed
    # only after the first was sent.
    names = ("ann", "bob", "cid", "dan")
    job = make_job(tmp_path, smtp_server, ca_file, HEAD + "recipients:\n" + "".join(
        f"  - {{email: {n}@example.org, name: {n}}}\n" for n in names) +
        "attachments: ['files/{{ name }}.pdf']\n",
        {f"files/{n}.pdf": b"%PDF" for n in names})

    def progress(done, total, address, outcome):
        (tmp_path / "files" / "dan.pdf").unlink(missing_ok=True)

    with caplog.at_level(logging.WARNING, logger="mailbatch"):
        report = run(load_job(job), RunOptions(progress=progress))
    assert report.counts["failed"] == 1 and report.counts["sent"] == 3
    _, rows = read_report(tmp_path)
    assert [r["status"] for r in rows] == ["sent", "sent", "sent", "failed"]
    assert any("dan@example.org: failed, not sent" in r.getMessage() for r in caplog.records)


def test_a_globstar_does_not_follow_folder_links_and_attaches_each_file_once(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, HEAD + "recipients:\n"
                   "  - {email: ann@example.org, name: Ann}\nattachments: ['files/**/*.pdf']\n",
                   {"files/a/one.pdf": b"%PDF 1", "files/a/b/two.pdf": b"%PDF 2"})
    (tmp_path / "files" / "a" / "b" / "up").symlink_to("..")  # a loop
    (tmp_path / "files" / "a" / "b" / "up2").symlink_to("../..")  # and another
    (tmp_path / "files" / "a" / "alias.pdf").symlink_to("one.pdf")
    code, err = run_cli(capsys, str(job))
    assert code == EXIT_OK, err
    report, _ = read_report(tmp_path)
    names = [a["name"] for a in report["recipients"][0]["attachments"]]
    assert sorted(names) == ["alias.pdf", "two.pdf"]  # one.pdf is alias.pdf's target


@pytest.mark.parametrize("flags", [["--dry-run"], ["--to", "me@example.org"]])
def test_a_dry_run_or_test_send_with_a_render_error_never_notifies_nor_reads_the_secret(
        tmp_path, smtp_server, ca_file, capsys, monkeypatch, flags):
    monkeypatch.delenv("MAILBATCH_TEST_PASSWORD", raising=False)  # reading it would fail
    job = make_job(tmp_path, smtp_server, ca_file, HEAD.replace("{{ name }}\\n", "{{ nme }}\\n")
                   + "recipients: [{email: ann@example.org, name: Ann}]\n"
                   "notify: owner@example.org\n")
    code, err = run_cli(capsys, *flags, str(job))
    assert code == EXIT_DATA, err
    assert "notify" not in err and "MAILBATCH_TEST_PASSWORD" not in err
    assert smtp_server.connections == 0 and smtp_server.messages == []


def test_a_refused_recipient_still_leaves_a_valid_report(tmp_path, smtp_server, ca_file,
                                                         password_env, capsys):
    """The report rows of a run are valid UTF-8 JSON and CSV even with odd recipient data."""
    job = make_job(tmp_path, smtp_server, ca_file, HEAD + "recipients:\n"
                   "  - {email: ann@example.org, name: \"\\u202eAnn \\U0001F600\"}\n"
                   "attachments: ['files/*']\n", {"files/\u00e9t\u00e9 \U0001F600.pdf": b"%PDF"})
    code, err = run_cli(capsys, str(job))
    assert code in (EXIT_OK, EXIT_PARTIAL), err
    report, rows = read_report(tmp_path)
    assert report["recipients"][0]["attachments"][0]["name"] == "\u00e9t\u00e9 \U0001F600.pdf"
    assert rows[0]["status"] == "sent"


@pytest.mark.parametrize("value", ["a\\u0000b", "x" * 300])
def test_a_report_path_rendered_from_data_that_no_file_system_takes_is_refused(
        tmp_path, smtp_server, ca_file, password_env, capsys, value):
    job = make_job(tmp_path, smtp_server, ca_file, HEAD +
                   "recipients: [{email: a@example.org, name: A}]\n"
                   "data: {d: d.json}\nreport: 'reports/{{ data.d.x }}/r'\n",
                   {"d.json": '{"x": "' + value + '"}'})
    for command in (["check"], ["run"]):
        capsys.readouterr()
        assert main([*command, str(job)]) == 78
        assert "report: renders to" in capsys.readouterr().err
    assert smtp_server.messages == []
