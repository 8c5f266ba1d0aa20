"""Recipient lists: inline, CSV, YAML and JSON; bad files and duplicates refused before sending."""

from __future__ import annotations

import json

import pytest

from mailbatch import load_job
from mailbatch.errors import EXIT_CONFIG, EXIT_DATA, EXIT_OK, JobError
from mailbatch.job.recipients import iter_recipients
from tests.pipeline import make_job, offline_job, parse, run_cli

PEOPLE = [
    {"email": "anne@example.org", "name": "Änne Müller", "region": "north"},
    {"email": "bob@example.org", "name": "Bob", "region": "south"},
]
BODY = """
    from: reports@example.org
    subject: "{{ name }} / {{ region }}"
    text: "Hello {{ name }}\\n"
"""

SOURCES = {
    "inline": ("recipients:\n" + "".join(
        f"      - {{email: {p['email']}, name: {p['name']}, region: {p['region']}}}\n"
        for p in PEOPLE), {}),
    "csv": ("recipients: people.csv\n", {"people.csv": "email,name,region\n" + "".join(
        f"{p['email']},{p['name']},{p['region']}\n" for p in PEOPLE)}),
    "csv with BOM and CRLF": ("recipients: people.csv\n", {"people.csv": (
        "\ufeffemail,name,region\r\n" + "".join(
            f"{p['email']},{p['name']},{p['region']}\r\n" for p in PEOPLE)).encode()}),
    "yaml": ("recipients: people.yaml\n", {"people.yaml": "".join(
        f"- email: {p['email']}\n  name: {p['name']}\n  region: {p['region']}\n"
        for p in PEOPLE)}),
    "yaml with a recipients key": ("recipients: people.yml\n", {"people.yml": json.dumps(
        {"recipients": PEOPLE})}),
    "json": ("recipients: people.json\n", {"people.json": json.dumps(PEOPLE)}),
    "csv with its own address column": (
        "recipients:\n      file: people.csv\n      address_field: mail\n"
        "      name_field: full_name\n",
        {"people.csv": "mail,full_name,name,region\n" + "".join(
            f"{p['email']},{p['name']},{p['name']},{p['region']}\n" for p in PEOPLE)}),
}


@pytest.mark.parametrize("source", SOURCES)
def test_every_recipient_source_gives_the_same_messages(tmp_path, smtp_server, ca_file,
                                                         password_env, capsys, source):
    recipients, files = SOURCES[source]
    job = make_job(tmp_path, smtp_server, ca_file, BODY + "    " + recipients, files)

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_OK, err
    messages = [parse(m.data) for m in smtp_server.messages]
    assert [m.rcpt_tos for m in smtp_server.messages] == [[p["email"]] for p in PEOPLE]
    assert [m["Subject"] for m in messages] == [f"{p['name']} / {p['region']}" for p in PEOPLE]
    assert [(m["To"].addresses[0].display_name, m["To"].addresses[0].addr_spec)
            for m in messages] == [(p["name"], p["email"]) for p in PEOPLE]


def test_recipients_stream_in_file_order_with_every_field(tmp_path):
    job = load_job(offline_job(tmp_path, BODY + "    recipients: people.csv\n", {
        "people.csv": "email,name,region,extra\n a@example.org ,Ann,north,x\nb@example.org,,,\n"
    }))

    got = [(r.index, r.address, r.name, dict(r.fields), r.where) for r in iter_recipients(job)]

    path = tmp_path / "people.csv"
    assert got == [
        (0, "a@example.org", "Ann", {"email": " a@example.org ", "name": "Ann",
                                     "region": "north", "extra": "x"}, f"{path}:2"),
        (1, "b@example.org", "", {"email": "b@example.org", "name": "", "region": "",
                                  "extra": ""}, f"{path}:3"),
    ]


def test_a_csv_without_the_address_column_is_refused_naming_its_columns(tmp_path, capsys):
    job = offline_job(tmp_path, BODY + "    recipients: people.csv\n",
                      {"people.csv": "mail,name\nanne@example.org,Anne\n"})

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_CONFIG
    assert err.strip() == (f"mailbatch: error: {tmp_path / 'people.csv'}:1: has no 'email' "
                           "column (columns: mail, name); add it or set "
                           "recipients.address_field")


def test_a_csv_that_is_not_utf8_is_refused_naming_the_line(tmp_path, capsys):
    latin1 = "email,name\nanne@example.org,Anne\njoerg@example.org,Jörg\n".encode("latin-1")
    job = offline_job(tmp_path, BODY + "    recipients: people.csv\n",
                      {"people.csv": latin1})

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_CONFIG
    assert err.startswith(f"mailbatch: error: {tmp_path / 'people.csv'}:3: not UTF-8")
    assert "save the file as UTF-8" in err
    assert len(err.strip().splitlines()) == 1


def test_a_long_csv_that_is_not_utf8_names_the_right_line(tmp_path):
    rows = "".join(f"user{i}@example.org,User {i}\n" for i in range(2000))
    data = ("email,name\n" + rows).encode() + "late@example.org,Ünal\n".encode("latin-1")
    job = load_job(offline_job(tmp_path, BODY + "    recipients: people.csv\n",
                               {"people.csv": data}))

    with pytest.raises(JobError) as caught:
        list(iter_recipients(job))

    assert caught.value.line == 2002


@pytest.mark.parametrize("recipients, files, words", [
    ("recipients: missing.csv", {}, "not found"),
    ("recipients: people.txt", {"people.txt": "email\na@example.org\n"}, ".csv, .yaml"),
    ("recipients: people.csv", {"people.csv": ""}, "empty"),
    ("recipients: people.csv", {"people.csv": "email,name\n"}, "no recipients"),
    ("recipients: people.csv", {"people.csv": "email,name\na@example.org,A,extra\n"},
     "more values"),
    ("recipients: people.csv", {"people.csv": "email,name\n,Nobody\n"}, "has no 'email' value"),
    ("recipients: people.json", {"people.json": '[{"email": "a@example.org"},'}, "invalid JSON"),
    ("recipients: people.json", {"people.json": '{"email": "a@example.org"}'}, "list"),
    ("recipients: people.yaml", {"people.yaml": "- email: a@example.org\n- [x]\n"}, "mapping"),
    ("recipients: []", {}, "empty"),
])
def test_a_bad_recipient_list_is_a_job_error_and_sends_nothing(
        tmp_path, smtp_server, ca_file, password_env, capsys, recipients, files, words):
    job = make_job(tmp_path, smtp_server, ca_file, BODY + "    " + recipients + "\n", files)

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_CONFIG
    assert words in err
    assert len(err.strip().splitlines()) == 1, err
    assert smtp_server.connections == 0


def test_duplicate_inline_recipients_differing_in_case_are_refused_listing_both_lines(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, BODY + """
    recipients:
      - {email: anne@example.org, name: Anne, region: north}
      - {email: bob@example.org, name: Bob, region: south}
      - {email: Anne@Example.ORG, name: Anne again, region: north}
    """)

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_DATA
    assert f"{job}:8: Anne@Example.ORG is listed twice (first at {job}:6)" in err
    assert smtp_server.connections == 0
    assert smtp_server.messages == []


def test_duplicate_csv_recipients_are_refused_listing_both_rows(tmp_path, smtp_server, ca_file,
                                                                password_env, capsys):
    people = tmp_path / "people.csv"
    job = make_job(tmp_path, smtp_server, ca_file, BODY + "    recipients: people.csv\n", {
        "people.csv": "email,name,region\nanne@example.org,Anne,n\nbob@example.org,Bob,s\n"
                      "ANNE@example.org,Anne,n\nbob@example.org,Bob,s\n"})

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_DATA
    assert f"{people}:4: ANNE@example.org is listed twice (first at {people}:2)" in err
    assert f"{people}:5: bob@example.org is listed twice (first at {people}:3)" in err
    assert err.splitlines()[0].endswith("2 message(s) could not be rendered; nothing was sent")
    assert smtp_server.messages == []


def test_a_duplicate_is_reported_even_when_its_first_copy_fails_to_render(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, BODY + """
    recipients:
      - {email: anne@example.org, region: north}
      - {email: anne@example.org, name: Anne, region: north}
    """)

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_DATA
    assert "'name' is undefined" in err
    assert "listed twice" in err
    assert smtp_server.messages == []
