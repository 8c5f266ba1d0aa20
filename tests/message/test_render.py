"""Rendering: strict templates, escaping, per-recipient attachments, and all-or-nothing sending."""

from __future__ import annotations

import pytest

from mailbatch.errors import EXIT_DATA, EXIT_OK
from tests.pipeline import make_job, outline, parse, run_cli

REGIONS_JOB = """
    from: reports@example.org
    subject: "Figures for {{ region }}"
    text: "Hello {{ name }}\\n"
    recipients: people.csv
    attachments:
      - "attachments/{{ region }}/*.pdf"
      - pattern: "attachments/{{ region }}/extra-*.txt"
        optional: true
"""
REGIONS_FILES = {
    "people.csv": "email,name,region\nanne@example.org,Anne,north\nbob@example.org,Bob,south\n"
                  "carl@example.org,Carl,north\n",
    "attachments/north/north-summary.pdf": b"%PDF north summary",
    "attachments/north/north-detail.pdf": b"%PDF north detail",
    "attachments/north/extra-notes.txt": b"only the north has notes",
    "attachments/south/south-summary.pdf": b"%PDF south summary",
    "attachments/west/west-summary.pdf": b"%PDF nobody is in the west",
}


def test_per_recipient_glob_attachments_reach_the_right_person_only(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, REGIONS_JOB, REGIONS_FILES)

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_OK, err
    north = [("north-detail.pdf", "application/pdf", b"%PDF north detail"),
             ("north-summary.pdf", "application/pdf", b"%PDF north summary"),
             ("extra-notes.txt", "text/plain", b"only the north has notes")]
    got = {m.rcpt_tos[0]: outline(parse(m.data))["attachments"] for m in smtp_server.messages}
    assert got == {
        "anne@example.org": north,
        "bob@example.org": [("south-summary.pdf", "application/pdf", b"%PDF south summary")],
        "carl@example.org": north,
    }


def test_optional_pattern_matching_nothing_is_fine(tmp_path, smtp_server, ca_file,
                                                   password_env, capsys):
    files = {**REGIONS_FILES, "people.csv": "email,name,region\nbob@example.org,Bob,south\n"}
    job = make_job(tmp_path, smtp_server, ca_file, REGIONS_JOB, files)

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_OK, err
    assert [a[0] for a in outline(parse(smtp_server.messages[0].data))["attachments"]] == [
        "south-summary.pdf"]


def test_required_pattern_matching_nothing_is_a_render_error_and_sends_nothing(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    files = {**REGIONS_FILES, "people.csv": REGIONS_FILES["people.csv"] +
             "dora@example.org,Dora,east\n"}
    job = make_job(tmp_path, smtp_server, ca_file, REGIONS_JOB, files)

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_DATA
    assert "dora@example.org" in err
    assert "'attachments/east/*.pdf' matches no file" in err
    assert smtp_server.messages == []
    assert smtp_server.connections == 0


def test_a_render_error_anywhere_sends_nothing_and_every_failure_is_listed(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, """
    from: reports@example.org
    subject: "Figures for {{ name }}"
    text: "Hello {{ name }}, your manager is {{ manager }}\\n"
    recipients:
      - {email: anne@example.org, name: Anne, region: north, manager: Max}
      - {email: bob@example.org, name: Bob, region: north}
      - {email: "carl(at)example.org", name: Carl, region: north, manager: Max}
      - {email: dora@example.org, name: Dora, region: east, manager: Max}
      - {email: emil@example.org, name: "Emil\\r\\nBcc: evil@example.net", region: north,
         manager: Max}
      - {email: fay@example.org, name: Fay, region: north, manager: Max}
    attachments: ["files/{{ region }}.pdf"]
    """, {"files/north.pdf": b"%PDF"})

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_DATA == 65
    assert smtp_server.messages == []
    assert smtp_server.connections == 0
    lines = err.strip().splitlines()
    assert lines[0] == "mailbatch: error: 4 message(s) could not be rendered; nothing was sent"
    assert len(lines) == 5, err
    bob, carl, dora, emil = lines[1:]
    assert "bob@example.org" in bob and "'manager' is undefined" in bob
    assert "carl(at)example.org" in carl and "not a valid email address" in carl
    assert "dora@example.org" in dora and "matches no file" in dora
    assert "emil@example.org" in emil and "line break" in emil
    for line, row in zip(lines[1:], (6, 7, 8, 9), strict=True):
        assert f"job.yaml:{row} " in line, line
    assert "Traceback" not in err


def test_fixing_the_job_after_a_render_error_sends_the_whole_batch(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    body = """
    from: reports@example.org
    subject: "Hi {{ name }}"
    text: "x\\n"
    recipients: people.csv
    """
    job = make_job(tmp_path, smtp_server, ca_file, body, {
        "people.csv": "email,name\nanne@example.org,Anne\nbob(at)example.org,Bob\n"})
    assert run_cli(capsys, str(job))[0] == EXIT_DATA

    (tmp_path / "people.csv").write_text("email,name\nanne@example.org,Anne\n"
                                         "bob@example.org,Bob\n")
    code, err = run_cli(capsys, str(job))

    assert code == EXIT_OK, err
    assert [m.rcpt_tos for m in smtp_server.messages] == [["anne@example.org"],
                                                          ["bob@example.org"]]


@pytest.mark.parametrize("where, value", [
    ("subject", "Hi\\nBcc: evil@example.net"),
    ("subject", "Hi\\rthere"),
    ("subject", "Hi\\u2028there"),
    ("subject", "Hi\\x0cthere"),
    ("header", "x\\r\\nBcc: evil@example.net"),
    ("to", "Anne\\n <anne@example.org>"),
    ("name", "Änne\\r\\nBcc: evil@example.net"),
    ("name", "Änne\\u2028Müller"),
])
def test_a_header_value_with_a_line_break_is_a_render_error(
        tmp_path, smtp_server, ca_file, password_env, capsys, where, value):
    job = make_job(tmp_path, smtp_server, ca_file, f"""
    from: reports@example.org
    subject: "{{{{ {'value' if where == 'subject' else "'plain'"} }}}}"
    {'to: "{{ value }}"' if where == 'to' else ''}
    headers:
      X-Note: "{{{{ {'value' if where == 'header' else "'plain'"} }}}}"
    text: "body\\n"
    recipients:
      - {{email: anne@example.org, value: "{value}",
         name: "{value if where == 'name' else 'Anne'}"}}
      - {{email: bob@example.org, value: {'bob@example.org' if where == 'to' else 'plain'}}}
    """)

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_DATA, err
    assert "anne@example.org" in err and "line break" in err
    assert "bob@example.org" not in err
    assert smtp_server.messages == []


def test_an_unknown_variable_in_a_job_wide_template_fails_every_recipient(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, """
    from: reports@example.org
    subject: "Week {{ weeek }}"
    text: "x\\n"
    recipients: [{email: anne@example.org}, {email: bob@example.org}]
    """)

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_DATA
    assert err.count("'weeek' is undefined") == 2
    assert smtp_server.messages == []


def test_html_is_autoescaped_while_text_and_subject_are_not(tmp_path, smtp_server, ca_file,
                                                            password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, """
    from: reports@example.org
    subject: "About {{ company }}"
    text_template: mail.txt.j2
    html_template: mail.html.j2
    recipients: people.csv
    """, {
        "mail.txt.j2": "Company: {{ company }}\n",
        "mail.html.j2": "<p>Company: {{ company }}</p>\n<p>{{ '<i>trusted</i>' | safe }}</p>\n",
        "people.csv": 'email,company\nanne@example.org,"<b>Smith & Sons</b> ""Ltd"""\n',
    })

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_OK, err
    message = outline(parse(smtp_server.messages[0].data))
    assert message["text"] == 'Company: <b>Smith & Sons</b> "Ltd"\n'
    assert message["html"] == ("<p>Company: &lt;b&gt;Smith &amp; Sons&lt;/b&gt; &#34;Ltd&#34;"
                               "</p>\n<p><i>trusted</i></p>\n")
    assert message["subject"] == 'About <b>Smith & Sons</b> "Ltd"'


def test_template_code_in_a_recipient_field_is_not_evaluated(tmp_path, smtp_server, ca_file,
                                                             password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, """
    from: reports@example.org
    subject: "Hi {{ name }}"
    text: "Hello {{ name }}\\n"
    html: "<p>Hello {{ name }}</p>\\n"
    recipients: people.csv
    attachments:
      - pattern: "files/{{ name }}*"
        optional: true
    """, {"people.csv": "email,name\nanne@example.org,{{ 7*7 }}{% raw %}\n",
          "files/49.pdf": b"must not be attached"})

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_OK, err
    message = outline(parse(smtp_server.messages[0].data))
    assert message["subject"] == "Hi {{ 7*7 }}{% raw %}"
    assert message["text"] == "Hello {{ 7*7 }}{% raw %}\n"
    assert message["html"] == "<p>Hello {{ 7*7 }}{% raw %}</p>\n"
    assert message["attachments"] == []


def test_data_files_in_csv_json_and_yaml_are_exposed_as_data_name(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, """
    from: reports@example.org
    subject: "Week {{ data.meta.week }}"
    text_template: mail.txt.j2
    recipients: [{email: anne@example.org, region: north}]
    data:
      sales: data/sales.csv
      totals: data/totals.json
      meta: data/meta.yaml
    """, {
        "mail.txt.j2": (
            "{% for row in data.sales if row.region == region %}{{ row.product }}={{ row.units }}"
            "\n{% endfor %}total={{ data.totals[region] }} of {{ data.totals | length }}\n"
            "owner={{ data.meta.owner.name }}\n"),
        "data/sales.csv": "region,product,units\nnorth,apples,3\nsouth,pears,4\nnorth,figs,5\n",
        "data/totals.json": '{"north": 8, "south": 4}',
        "data/meta.yaml": "week: 2024-W10\nowner:\n  name: Ünal\n",
    })

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_OK, err
    message = outline(parse(smtp_server.messages[0].data))
    assert message["subject"] == "Week 2024-W10"
    assert message["text"] == "apples=3\nfigs=5\ntotal=8 of 2\nowner=Ünal\n"


def test_report_lists_nothing_when_rendering_fails(tmp_path, smtp_server, ca_file,
                                                   password_env, capsys):
    job = make_job(tmp_path, smtp_server, ca_file, """
    from: reports@example.org
    subject: "{{ nope }}"
    text: "x\\n"
    recipients: [{email: anne@example.org}]
    """)

    assert run_cli(capsys, str(job))[0] == EXIT_DATA
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("region, words", [
    ("*", "matches no file"),
    ("[ns]*", "matches no file"),
    ("../private", "outside the attachments root"),
])
def test_a_recipient_value_in_a_pattern_is_a_literal_name_and_cannot_leave_the_root(
        tmp_path, smtp_server, ca_file, password_env, capsys, region, words):
    job = make_job(tmp_path, smtp_server, ca_file, """
    from: reports@example.org
    subject: "Figures for {{ region }}"
    text: "Hello\\n"
    recipients: people.csv
    attachments_root: attachments
    attachments: ["{{ region }}/*.pdf"]
    """, {"people.csv": f"email,region\nmallory@example.org,{region}\n",
          "attachments/north/north.pdf": b"%PDF north",
          "attachments/south/south.pdf": b"%PDF south",
          "private/secret.pdf": b"%PDF not for mailing"})

    code, err = run_cli(capsys, str(job))

    assert code == EXIT_DATA, err
    assert "mallory@example.org" in err and words in err
    assert smtp_server.messages == []


@pytest.mark.parametrize("job, words", [
    ('to: "{{ boss }}"', "to renders empty"),
    ('cc: "{{ name }} <{{ email }}>"', "cc: 'Smith' in 'Smith, Ann <ann@example.org>' is "
                                       "not an email address (plain ASCII user@domain); a "
                                       "name containing a comma must be in double quotes"),
    ("cc: \"{{ team }}\"", "a group (name: addresses;)"),
    ("reply_to: \"{{ name }} (Sales) <r@example.org>\"", "reply_to: "),
    ("headers: {Sender: \"{{ team }}\"}", "headers.Sender: "),
    ('headers: {Sender: "a@example.org, b@example.org"}',
     "headers.Sender: must be one address, not 2"),
])
def test_an_address_field_that_does_not_read_as_addresses_is_a_render_error(
        tmp_path, smtp_server, ca_file, password_env, capsys, job, words):
    path = make_job(tmp_path, smtp_server, ca_file, f"""
    from: reports@example.org
    subject: Hi
    text: "x\\n"
    {job}
    recipients:
      - {{email: ann@example.org, name: "Smith, Ann", boss: "", team: "Sales: a@example.org;"}}
    """)

    code, err = run_cli(capsys, str(path))

    assert code == EXIT_DATA
    assert "(ann@example.org)" in err and words in err, err
    assert smtp_server.messages == [] and smtp_server.connections == 0


def test_the_mailbox_helper_keeps_a_name_from_the_data_one_name(
        tmp_path, smtp_server, ca_file, password_env, capsys):
    path = make_job(tmp_path, smtp_server, ca_file, """
    from: reports@example.org
    subject: Hi
    text: "x\\n"
    to: "{{ mailbox(name, email) }}"
    cc: "{{ mailbox(boss_name, boss) }}"
    recipients:
      - {email: ann@example.org, name: 'Smith, Ann "The Boss"', boss: b@example.org,
         boss_name: "Jones (Sales): EMEA"}
    """)

    assert run_cli(capsys, str(path))[0] == EXIT_OK

    [received] = smtp_server.messages
    assert [(a.display_name, a.addr_spec) for a in received.message["To"].addresses] == [
        ('Smith, Ann "The Boss"', "ann@example.org")]
    assert [(a.display_name, a.addr_spec) for a in received.message["Cc"].addresses] == [
        ("Jones (Sales): EMEA", "b@example.org")]
