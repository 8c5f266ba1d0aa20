"""Job file validation: every mistake is one line naming the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbatch import load_job
from mailbatch.errors import EXIT_CONFIG, EXIT_OK, JobError
from mailbatch.job.fields import batch_problem
from tests.helpers import write_job
from tests.pipeline import make_job, offline_job, outline, parse, read_report, run_cli

VALID = """
    from: "Reports <reports@example.org>"
    subject: "Hello {{ name }}"
    text: "Hi\\n"
    recipients: [{email: anne@example.org}]
"""


def job_error(tmp_path, body: str, files=None) -> JobError:
    with pytest.raises(JobError) as caught:
        load_job(offline_job(tmp_path, body, files))
    return caught.value


def test_a_valid_job_loads_into_frozen_settings(tmp_path):
    job = load_job(offline_job(tmp_path, VALID))

    assert job.sender_address == "reports@example.org"
    assert job.sender_domain == "example.org"
    assert job.smtp.host == "127.0.0.1"
    with pytest.raises(AttributeError):
        job.subject = "changed"  # type: ignore[misc]


def test_an_unknown_key_is_refused_naming_the_key_and_its_line(tmp_path):
    err = job_error(tmp_path, VALID + "    attachmnts: [a.pdf]\n")

    assert err.line == 5
    assert err.field == "attachmnts"
    assert str(err).startswith(f"{tmp_path / 'job.yaml'}:5: attachmnts: unknown key")


def test_a_misspelt_required_key_is_reported_as_the_typo_not_as_missing(tmp_path):
    err = job_error(tmp_path, VALID.replace("subject:", "subjet:"))

    assert (err.line, err.field) == (2, "subjet")
    assert "did you mean 'subject'" in str(err)


def test_an_unknown_key_inside_smtp_names_the_full_key_path(tmp_path):
    path = offline_job(tmp_path, VALID)
    path.write_text(path.read_text().replace("  timeout: 2\n", "  timeout: 2\n  prot: 25\n"))

    with pytest.raises(JobError) as caught:
        load_job(path)

    assert caught.value.field == "smtp.prot"
    assert caught.value.line == 12
    assert "unknown key" in str(caught.value)


@pytest.mark.parametrize("change, field, words", [
    (("recipients: [{email: anne@example.org}]", "recipients: 42"), "recipients",
     "must be text or a list or a mapping, not the number 42"),
    (("text: \"Hi\\n\"", "text: [Hi]"), "text", "not a list"),
    (("subject:", "attachments: report.pdf\n    subject:"), "attachments",
     "must be a list, not text"),
    (("subject:", "cc: {boss: boss@example.org}\n    subject:"), "cc",
     "must be text or a list, not a mapping"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_the_key(tmp_path, change, field, words):
    err = job_error(tmp_path, VALID.replace(*change))

    assert err.field == field
    assert words in str(err)
    assert err.line is not None


def test_a_port_that_is_not_a_number_is_refused(tmp_path):
    path = offline_job(tmp_path, VALID)
    text = path.read_text()
    path.write_text(text.replace(text.split("port: ")[1].split("\n")[0], '"four six five"'))

    with pytest.raises(JobError) as caught:
        load_job(path)

    assert caught.value.field == "smtp.port"
    assert "must be a whole number, not text" in str(caught.value)


@pytest.mark.parametrize("key", ["from", "subject", "recipients"])
def test_a_missing_required_field_is_named(tmp_path, key):
    body = "\n".join(line for line in VALID.splitlines() if not line.strip().startswith(key))

    err = job_error(tmp_path, body)

    assert err.field == key
    assert "is required but missing" in str(err)


def test_a_job_without_any_body_is_refused(tmp_path):
    err = job_error(tmp_path, VALID.replace('    text: "Hi\\n"\n', ""))

    assert "no body" in str(err)


def test_a_yaml_syntax_error_names_the_line(tmp_path):
    err = job_error(tmp_path, VALID + "    attachments: [a.pdf\n    bcc: x@example.org\n")

    assert err.path == str(tmp_path / "job.yaml")
    assert err.line in (5, 6)
    assert "YAML syntax error" in str(err)


def test_a_duplicate_key_is_a_yaml_error_with_its_line(tmp_path):
    err = job_error(tmp_path, VALID + '    subject: "again"\n')

    assert err.line == 5
    assert "duplicate key 'subject'" in str(err)


def test_a_password_in_the_job_file_is_refused_naming_the_alternatives(tmp_path):
    path = offline_job(tmp_path, VALID)
    path.write_text(path.read_text().replace("  password_env:", "  password: hunter2-secret\n"
                                                                "  password_env:"))

    with pytest.raises(JobError) as caught:
        load_job(path)

    message = str(caught.value)
    assert caught.value.field == "smtp.password"
    for alternative in ("password_env", "password_file", "password_command"):
        assert alternative in message
    assert "hunter2-secret" not in message


@pytest.mark.parametrize("sender, words", [
    ("Reports <reports(at)example.org>", "not an email address"),
    ("Reports <réports@example.org>", "needs SMTPUTF8"),
    ("Reports\\n <reports@example.org>", "one line"),
])
def test_a_sender_that_is_not_one_plain_address_is_refused(tmp_path, sender, words):
    err = job_error(tmp_path, VALID.replace('"Reports <reports@example.org>"', f'"{sender}"'))

    assert err.field == "from"
    assert words in str(err)


def test_a_missing_template_file_is_refused_before_anything_is_sent(tmp_path):
    err = job_error(tmp_path, VALID.replace('text: "Hi\\n"', "text_template: nothere.j2"))

    assert err.field == "text_template"
    assert "not found" in str(err)


def test_job_errors_from_the_cli_are_one_line_with_exit_78(tmp_path, capsys):
    job = offline_job(tmp_path, VALID + "    attachmnts: [a.pdf]\n")

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_CONFIG == 78
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"mailbatch: error: {job}:5: attachmnts: unknown key; check "
                               "the spelling (known keys here: ")
    assert "Traceback" not in err


def test_a_missing_job_file_is_a_one_line_error(tmp_path, capsys):
    code, err = run_cli(capsys, str(tmp_path / "nothere.yaml"))

    assert code == EXIT_CONFIG
    assert err.strip() == f"mailbatch: error: {tmp_path / 'nothere.yaml'}: file not found; " \
                          "check the path"


def test_relative_paths_resolve_against_the_job_folder_from_any_working_directory(
        tmp_path, smtp_server, ca_file, password_env, capsys, monkeypatch):
    folder = tmp_path / "jobs" / "weekly"
    folder.mkdir(parents=True)
    make_job(folder, smtp_server, ca_file, """
    from: reports@example.org
    subject: "{{ data.meta.title }}"
    text_template: templates/mail.txt.j2
    recipients: lists/people.csv
    data:
      meta: data/meta.json
    attachments: ["files/{{ region }}/*.pdf"]
    """, {
        "templates/mail.txt.j2": "{% include 'templates/footer.j2' %}",
        "templates/footer.j2": "Footer for {{ region }}\n",
        "lists/people.csv": "email,region\nanne@example.org,north\n",
        "data/meta.json": '{"title": "Weekly"}',
        "files/north/n.pdf": b"%PDF",
    })
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    code, err = run_cli(capsys, "../jobs/weekly/job.yaml")

    assert code == EXIT_OK, err
    message = outline(parse(smtp_server.messages[0].data))
    assert message["subject"] == "Weekly"
    assert message["text"] == "Footer for north\n"
    assert [a[0] for a in message["attachments"]] == ["n.pdf"]
    assert read_report(folder)[0]["counts"]["sent"] == 1
    assert (folder / ".mailbatch").is_dir()
    assert list(elsewhere.iterdir()) == []


def test_a_job_file_can_be_written_without_the_helpers(tmp_path):
    job = write_job(tmp_path, """
        smtp:
          host: smtp.example.com
          username: reports@example.com
          password_env: SOME_VAR
        from: reports@example.com
        subject: x
        html: "<p>x</p>"
        recipients: people.csv
    """)

    loaded = load_job(job)

    assert loaded.smtp.port == 465
    assert loaded.smtp.security == "tls"
    assert loaded.recipients.path == tmp_path / "people.csv"


@pytest.mark.parametrize("batch", ["''", "'{{ \"\" }}'", "'  '"])
def test_a_batch_name_that_renders_empty_is_refused(tmp_path, capsys, batch):
    job = offline_job(tmp_path, VALID + f"    batch: {batch}\n")

    code, err = run_cli(capsys, "--dry-run", str(job))

    assert code == EXIT_CONFIG
    assert err.strip() == (f"mailbatch: error: {job}: batch: renders to nothing; a batch needs "
                           "a name such as '{{ today }}' or '{{ iso_week }}'")


@pytest.mark.parametrize("batch, odd", [
    ("\"{{ now.strftime('%m/%Y') }}\"", "'/'"),
    ("'a/../../b'", "'/'"),
    ("'..'", "'..'"),
    ("\"a{{ '\\n' }}b\"", "'\\n'"),
    ("'q\\3'", "'\\\\'"),
])
def test_a_batch_name_that_cannot_be_part_of_a_file_name_is_refused_before_anything_is_written(
        tmp_path, capsys, batch, odd):
    job = offline_job(tmp_path, VALID + f"    batch: {batch}\n")

    code, err = run_cli(capsys, "--dry-run", str(job))

    assert code == EXIT_CONFIG, err
    assert f"{job}: batch: renders to " in err and f", and {odd} cannot be part" in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "reports").exists() and not (tmp_path / "outbox").exists()


@pytest.mark.parametrize("extra, field, words", [
    ("headers: {X-" + "N" * 75 + ": v}", "headers.X-" + "N" * 75, "at most 76 characters"),
    ("attachments: [{pattern: a.pdf, type: tëxt/plain}]", "attachments[0].type",
     "must be a MIME type"),
    ("attachments: [{pattern: a.pdf, type: " + "a" * 128 + "/pdf}]", "attachments[0].type",
     "must be a MIME type"),
])
def test_header_names_and_types_too_long_for_a_header_line_or_not_ascii_are_refused(
        tmp_path, extra, field, words):
    err = job_error(tmp_path, VALID + f"    {extra}\n")

    assert err.field == field
    assert words in str(err)


@given(st.text(max_size=40))
def test_any_batch_name_that_is_accepted_stays_one_file_name_in_the_report_path(name):
    if batch_problem(name) is None:
        prefix = Path("reports") / f"job-{name}"
        assert prefix.parent == Path("reports") and prefix.name == f"job-{name}"
        assert name.isprintable() and name not in (".", "..")
