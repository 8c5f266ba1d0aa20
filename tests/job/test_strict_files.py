"""Job, recipient and data files are read strictly and within bounds: a field named twice or
without a name, a YAML bomb, a value nested thousands deep, a number that is not finite or
absurd are refused at ``file:line`` before anything else happens."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbatch import load_job
from mailbatch.errors import JobError
from mailbatch.job.datafiles import load_data
from mailbatch.job.fileformats import header_problem, load_json
from mailbatch.job.recipients import iter_recipients
from mailbatch.job.yamlfile import MAX_DEPTH, load_yaml
from tests.pipeline import offline_job

BODY = """
    from: reports@example.org
    subject: "Hi {{ name }}"
    text: "Hello\\n"
"""


def _recipients(tmp_path, name, content):
    job = offline_job(tmp_path, BODY + f"recipients: {name}\n", {name: content})
    return list(iter_recipients(load_job(job)))


@pytest.mark.parametrize(("header", "expect"), [
    ("email,name,email", "column 3 ('email') repeats column 1"),
    ("email,name, email", "column 3 (' email') repeats column 1"),
    ("email,,name", "column 2 has no name"),
    ("email, ,name", "column 2 has no name"),
])
def test_a_recipients_csv_header_that_repeats_or_omits_a_name_is_refused_at_line_1(
        tmp_path, header, expect):
    content = f"{header}\nann@example.org,Ann,bob@example.org\n"
    with pytest.raises(JobError) as caught:
        _recipients(tmp_path, "people.csv", content)
    assert caught.value.line == 1
    assert expect in str(caught.value)


def test_a_row_with_fewer_values_than_the_header_is_refused_at_its_line(tmp_path):
    with pytest.raises(JobError, match=r"people.csv:3: row has fewer values \(1\)"):
        _recipients(tmp_path, "people.csv",
                    "email,name\nann@example.org,Ann\nbob@example.org\n")


def test_an_oversized_csv_field_is_reported_on_its_own_line(tmp_path):
    big = "x" * 200_000
    with pytest.raises(JobError, match=r"people.csv:3: CSV error: field larger"):
        _recipients(tmp_path, "people.csv",
                    f"email,name\nann@example.org,Ann\nbob@example.org,{big}\n")


def test_a_json_recipient_with_a_key_twice_is_refused_at_the_line_of_its_object(tmp_path):
    content = ('[\n  {"email": "ann@example.org", "name": "Ann"},\n'
               '  {"email": "bob@example.org",\n   "email": "eve@example.org"}\n]\n')
    with pytest.raises(JobError, match=r"people.json:3: key 'email' appears twice"):
        _recipients(tmp_path, "people.json", content)


def test_a_yaml_recipient_with_a_blank_key_is_refused(tmp_path):
    with pytest.raises(JobError, match="key 2 has no name"):
        _recipients(tmp_path, "people.yaml", '- {email: ann@example.org, " ": x}\n')


@pytest.mark.parametrize(("content", "expect"), [
    ('{"a": NaN}', "NaN is not a JSON number"),
    ('{"a": Infinity}', "Infinity is not a JSON number"),
    ('{"a": ' + "9" * 5000 + "}", "a number too large to read"),
    ("[" * 5000 + "]" * 5000, f"nested more than {MAX_DEPTH} levels deep"),
    ("[" * 150 + "]" * 150, f"nested more than {MAX_DEPTH} levels deep"),
    ('{"rows": [{"a": 1}, {"a": 2, "a": 3}]}', "key 'a' appears twice"),
])
def test_json_data_files_are_refused_when_ambiguous_or_unbounded(tmp_path, content, expect):
    path = tmp_path / "sales.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(JobError, match=expect):
        load_json(path)


def test_a_data_csv_with_a_repeated_column_is_refused(tmp_path):
    job = offline_job(tmp_path, BODY + "recipients: [{email: a@example.org}]\n"
                      "data:\n  sales: sales.csv\n",
                      {"sales.csv": "region,units,region\nnorth,1,south\n"})
    with pytest.raises(JobError, match=r"sales.csv:1: column 3 \('region'\) repeats"):
        load_data(load_job(job))


BILLION_LAUGHS = "".join(
    f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join(
        [f"*{chr(96 + i)}"] * 9 if i else ['"lol"'] * 9) + "]\n" for i in range(9))


@pytest.mark.parametrize(("content", "line", "expect"), [
    (BILLION_LAUGHS, 6, "aliases (*name) expand to more than"),
    ("x: " + "[" * 3000 + "]" * 3000 + "\n", 1, f"nested more than {MAX_DEPTH} levels"),
    ("a: 1\nx: " + "9" * 5000 + "\n", 2, "a number too large to read"),
    ("a: &a [1, *a]\n", 1, "recursive structure"),
    ("a: 1\nb: 2024-02-30\n", 2, "day is out of range"),
    ('a: 1\nb: "x\x1by"\n', 2, "cannot contain the character U+001B"),
    ('a: 1\nb: "x\\ud800y"\n', 2, "lone surrogate"),
])
def test_yaml_that_would_build_too_much_or_cannot_be_built_is_refused_at_its_line(
        tmp_path, content, line, expect):
    path = tmp_path / "data.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(JobError) as caught:
        load_yaml(path)
    assert caught.value.line == line
    assert expect in str(caught.value)


def test_yaml_escaped_surrogate_pairs_are_joined_into_their_character(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text('a: "\\ud83d\\ude00 ok"\n')
    assert load_yaml(path) == {"a": "\U0001F600 ok"}


def test_yaml_aliases_for_shared_defaults_are_fine(tmp_path):
    rows = "".join(f"  - {{<<: *base, n: {i}}}\n" for i in range(2000))
    path = tmp_path / "data.yaml"
    path.write_text("base: &base {region: north, units: 1}\nrows:\n" + rows)
    assert load_yaml(path)["rows"][1999] == {"region": "north", "units": 1, "n": 1999}


@pytest.mark.parametrize(("setting", "expect"), [
    ("timeout: .inf", "smtp.timeout: must be a finite number"),
    ("timeout: .nan", "smtp.timeout: must be a finite number"),
    ("timeout: 1.0e+300", "smtp.timeout: must be between 0 and 3600 seconds"),
    ("port: " + "9" * 4000, "smtp.port: must be between 1 and 65535, not a number that large"),
    ("max_messages_per_connection: -1", "must be between 0 and 1e+09"),
    ("retry: {attempts: 0}", "smtp.retry.attempts: must be between 1 and 1000"),
    ("retry: {max_time: .inf}", "smtp.retry.max_time: must be a finite number"),
    ("rate: 99999999999999999999/second", "is not a rate"),
    ('host: ""', "smtp.host: must be a host name or address"),
    ('host: "mail example.org"', "smtp.host: must be a host name or address"),
    ("timeout: 1e3", "smtp.timeout: must be a number, not text ('1e3' is text to YAML"),
    ("timeout: 30s", "smtp.timeout: must be a number, not text (write the number alone"),
])
def test_numeric_settings_must_be_finite_and_sane(tmp_path, setting, expect):
    job = offline_job(tmp_path, BODY + "recipients: [{email: a@example.org}]\n")
    key = setting.partition(":")[0]
    lines = [line for line in job.read_text().splitlines() if not line.startswith(f"  {key}:")]
    job.write_text("\n".join([*lines, f"  {setting}"]) + "\n")
    with pytest.raises(JobError, match=expect.replace("(", r"\(").replace("+", r"\+")):
        load_job(job)


@pytest.mark.parametrize("every", ["99999999999999999999 minutes", "10000000 weeks"])
def test_an_absurd_schedule_interval_is_refused(tmp_path, every):
    job = offline_job(tmp_path, BODY + "recipients: [{email: a@example.org}]\n"
                      f"schedule: every {every}\n")
    with pytest.raises(JobError, match=r"schedule: .* is too long"):
        load_job(job)


@pytest.mark.parametrize(("setting", "expect"), [
    ("text_template: " + "x" * 300, "text_template: is not a usable path: it has a name longer"),
    ('recipients: "a\\0b.csv"', "recipients: is not a usable path: it contains a NUL"),
    ("attachments_root: " + "x/" * 2100, "attachments_root: is not a usable path: it is longer"),
    ("data: {d: " + "y" * 300 + ".json}", "data.d: is not a usable path"),
])
def test_a_path_no_file_system_could_open_is_refused_at_its_key(tmp_path, setting, expect):
    job = offline_job(tmp_path, "from: r@example.org\nsubject: Hi\n" + (
        "" if "recipients" in setting else "recipients: [{email: a@example.org}]\n") +
        ("" if "text_template" in setting else "text: x\n") + setting + "\n")
    with pytest.raises(JobError, match=expect):
        load_job(job)


@pytest.mark.parametrize("make", ["missing", "file"])
def test_an_attachments_root_that_is_not_a_folder_is_one_job_error_not_one_per_recipient(
        tmp_path, make):
    if make == "file":
        (tmp_path / "nope").write_text("a file")
    job = offline_job(tmp_path, "from: r@example.org\nsubject: Hi\ntext: x\n"
                      "recipients: [{email: a@example.org}, {email: b@example.org}]\n"
                      "attachments_root: nope\nattachments: ['*.pdf']\n")

    with pytest.raises(JobError, match=r"attachments_root: .*nope (does not exist|is a file); "
                                       "it must name the folder the attachments are in"):
        load_job(job)


def test_a_job_without_an_smtp_section_is_a_clear_error(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("from: r@example.org\nsubject: x\ntext: y\nrecipients: [{email: a@x.org}]\n")
    with pytest.raises(JobError, match="smtp: is required but missing"):
        load_job(job)


def test_a_section_of_the_wrong_type_names_its_line(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("from: r@example.org\nsubject: x\ntext: y\nrecipients: [{email: a@x.org}]\n"
                   "headers: [X-A]\nsmtp:\n  - host\n")
    with pytest.raises(JobError, match=r"job.yaml:6: smtp: must be a mapping"):
        load_job(job)
    job.write_text(job.read_text().replace("smtp:\n  - host\n", "smtp: {host: h}\n"))
    with pytest.raises(JobError, match=r"job.yaml:5: headers: must be a mapping"):
        load_job(job)


@pytest.mark.parametrize("notify", ['"owner at example"', "{to: 'Owner <owner@>'}",
                                    '"a@example.org\\nBcc: b@example.org"'])
def test_a_notify_address_that_is_not_one_is_refused(tmp_path, notify):
    job = offline_job(tmp_path, BODY + "recipients: [{email: a@example.org}]\n"
                      f"notify: {notify}\n")
    with pytest.raises(JobError, match=r"notify.*is not an email address"):
        load_job(job)


def test_cc_items_must_be_text_not_nested_values(tmp_path):
    job = offline_job(tmp_path, BODY + "recipients: [{email: a@example.org}]\n"
                      "cc: [a@example.org, [b@example.org]]\n")
    with pytest.raises(JobError, match=r"cc\[1\]: must be text, not a list"):
        load_job(job)


# -- generated: any header with a repeated or blank name is refused --------------------------

names = st.text(string.ascii_letters + "_", min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(names, min_size=1, max_size=6, unique=True), st.data())
def test_generated_headers_with_a_repeated_name_are_always_refused(header, data):
    assert header_problem(header) is None
    repeated = data.draw(st.sampled_from(header))
    padding = data.draw(st.sampled_from(["", " ", "  "]))
    at = data.draw(st.integers(0, len(header)))
    assert header_problem([*header[:at], padding + repeated, *header[at:]]) is not None


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(names, min_size=2, max_size=5), st.booleans())
def test_generated_json_objects_with_a_repeated_key_are_always_refused(tmp_path, keys, unique):
    if unique:
        keys = list(dict.fromkeys(keys))
    pairs = ", ".join(f"{json.dumps(k)}: {i}" for i, k in enumerate(keys))
    path = tmp_path / "x.json"
    path.write_text(f'[\n{{"n": 0}},\n{{{pairs}}}\n]')
    if len(set(keys)) == len(keys):
        assert load_json(path)[1] == {k: i for i, k in enumerate(keys)}
    else:
        with pytest.raises(JobError, match="appears twice") as caught:
            load_json(path)
        assert caught.value.line == 3


def test_a_key_written_beside_a_merge_overrides_the_merged_value(tmp_path):
    """YAML's merge key: ``<<: *defaults`` then ``timeout: 9`` means "the defaults, but 9";
    only a key written twice by hand is a duplicate."""
    path = tmp_path / "data.yaml"
    path.write_text("a: &a {x: 1, y: 2}\nb: &b {x: 3, z: 4}\n"
                    "c: {<<: [*a, *b], y: 9}\nd: {<<: *a, x: 5}\n")
    data = load_yaml(path)
    assert data["c"] == {"x": 1, "y": 9, "z": 4}  # of two merged mappings, the first wins
    assert data["d"] == {"x": 5, "y": 2}
    path.write_text("a: &a {x: 1}\nd: {<<: *a, x: 5, x: 6}\n")
    with pytest.raises(JobError, match="duplicate key 'x'"):
        load_yaml(path)


def test_yaml_recipients_sharing_defaults_through_a_merge_key_load(tmp_path):
    people = ("- &ann {email: ann@example.org, name: Ann, region: north}\n"
              "- {<<: *ann, email: bob@example.org, name: Bob}\n")
    found = _recipients(tmp_path, "people.yaml", people)
    assert [(r.address, r.name, r.fields["region"]) for r in found] == [
        ("ann@example.org", "Ann", "north"), ("bob@example.org", "Bob", "north")]


def test_a_json_file_with_a_utf8_byte_order_mark_reads_like_yaml_and_csv_do(tmp_path):
    found = _recipients(tmp_path, "people.json",
                        '\ufeff[{"email": "ann@example.org", "name": "Ann"}]')
    assert [r.address for r in found] == ["ann@example.org"]


@pytest.mark.parametrize(("setting", "expect"), [
    ('host: "mail..example.org"', "smtp.host: 'mail..example.org' is not a host name"),
    (f'host: "{"a" * 64}.example.org"', "a part between dots is empty or longer than 63"),
    ('username: "me\\r\\nMAIL FROM:<x@y>"', "smtp.username: must not contain a line break"),
    ('host: "mail.example.org:587"', "write the host alone and the port as smtp.port: 587"),
    ("ca_file: missing.pem", "smtp.ca_file: .*missing.pem is not a file"),
    ("password_command: [pass, {show: smtp}]", "smtp.password_command: must be a list of words"),
])
def test_smtp_settings_a_connection_would_trip_on_are_refused_at_their_key(
        tmp_path, setting, expect):
    job = offline_job(tmp_path, BODY + "recipients: [{email: a@example.org}]\n")
    key = setting.partition(":")[0]
    gone = (f"  {key}:", "  password_env:" if key.startswith("password") else f"  {key}:")
    lines = [line for line in job.read_text().splitlines() if not line.startswith(gone)]
    job.write_text("\n".join([*lines, f"  {setting}"]) + "\n")
    with pytest.raises(JobError, match=expect.replace("(", r"\(")):
        load_job(job)


@given(host=st.text(st.sampled_from("ab.-é"), min_size=1, max_size=70))
@settings(max_examples=60, deadline=None)
def test_any_host_that_loads_can_be_handed_to_the_socket_layer(host):
    """The job refuses what ``socket.getaddrinfo`` would crash on (UnicodeError) instead of
    leaving it to the first connection."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        job = offline_job(Path(tmp), BODY + "recipients: [{email: a@example.org}]\n")
        job.write_text(job.read_text().replace("host: 127.0.0.1", f"host: {json.dumps(host)}"))
        try:
            loaded = load_job(job)
        except JobError:
            return
        loaded.smtp.host.encode("idna")


@pytest.mark.parametrize(("person", "expect"), [
    ('{"email": "ann@example.org", "name": {"first": "Ann"}}', "name: must be text, not a mapping"),
    ('{"email": ["ann@example.org"], "name": "Ann"}', "email: must be text, not a list"),
    ('{"email": true, "name": "Ann"}', "email: must be text, not a boolean"),
])
def test_a_recipient_address_or_name_that_is_not_text_is_refused_at_its_place(
        tmp_path, person, expect):
    """Else the name would travel as Python's ``{'first': 'Ann'}`` in the To header."""
    with pytest.raises(JobError, match=expect) as caught:
        _recipients(tmp_path, "people.json", f"[{person}]")
    assert "people.json" in str(caught.value)
