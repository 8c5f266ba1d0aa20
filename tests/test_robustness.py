"""Every promise holds on inputs nobody wrote a test for: a valid job folder, mutated at random.

Each example deletes, retypes or duplicates job keys, corrupts the recipient list, a data file
or a template, or puts odd Unicode and control characters into recipient data, then runs
``check``, ``run --dry-run`` or ``run`` against the real test server. Whatever happens:

- the exit code is a documented one (never 70: no input may reach the last resort);
- no traceback; stderr is empty, or its first line is ``mailbatch: error: ...`` (with ``-q``,
  a finished batch with problems prints its summary line instead), and holds no raw control
  character;
- nothing reached the server unless the exit code says messages were sent (0 or 1), but the
  owner's notify summary of a real run that failed; a dry run or ``check`` never connected;
- every report written is valid UTF-8 JSON and CSV.

``MAILBATCH_ROBUSTNESS_EXAMPLES=500 pytest tests/test_robustness.py`` runs a deeper search.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbatch.cli.main import main
from tests.helpers import PASSWORD_ENV
from tests.smtpserver import PASSWORD, USERNAME, SmtpTestServer

OWNER = "owner@example.org"
EXAMPLES = int(os.environ.get("MAILBATCH_ROBUSTNESS_EXAMPLES", "40"))
DOCUMENTED = {0, 1, 2, 3, 65, 69, 74, 75, 77, 78}
SENT = {0, 1}

PEOPLE = [{"email": "ann@example.org", "name": "Ann", "region": "north", "count": "2"},
          {"email": "bob@example.org", "name": "Bob", "region": "south", "count": "3"},
          {"email": "cid@example.org", "name": "Cid", "region": "north", "count": "5"}]
TEXT = ("Hello {{ name }},\n{% for row in data.sales[region] %}{{ row.product }}: "
        "{{ row.units }}\n{% endfor %}Share: {{ 100 // count|int }}%\n")
HTML = "<p>Hello {{ name }}</p><ul>{% for row in data.sales[region] %}<li>{{ row.units }}</li>" \
       "{% endfor %}</ul>\n"
SALES = {"north": [{"product": "Widget", "units": 3}], "south": [{"product": "Valve",
                                                                  "units": 7}]}


def _job(server: SmtpTestServer, ca_file: Path) -> dict[str, Any]:
    return {
        "smtp": {"host": server.host, "port": server.port, "username": USERNAME,
                 "password_env": PASSWORD_ENV, "ca_file": str(ca_file), "timeout": 5,
                 "retry": {"attempts": 1}},
        "from": "Reports <reports@example.org>",
        "subject": "Report for {{ name }}",
        "text_template": "text.j2",
        "html_template": "html.j2",
        "recipients": "people.csv",
        "cc": ["lead@example.org"],
        "headers": {"X-Region": "{{ region }}"},
        "attachments": ["files/{{ region }}/*.pdf", {"pattern": "files/all.txt",
                                                     "optional": True}],
        "data": {"sales": "sales.json"},
        "report": "reports/{{ job }}",
        "notify": OWNER,
    }


def _files() -> dict[str, str | bytes]:
    return {"text.j2": TEXT, "html.j2": HTML, "people.csv": _csv(PEOPLE),
            "sales.json": json.dumps(SALES), "files/north/n.pdf": b"%PDF n",
            "files/south/s.pdf": b"%PDF s", "files/all.txt": "for everyone"}


def _csv(rows: list[dict[str, str]], header: list[str] | None = None) -> str:
    out = io.StringIO()
    header = header or list(rows[0])
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(h, "") for h in header])
    return out.getvalue()


def _yaml(job: dict[str, Any], duplicate: str | None = None) -> str:
    """The job as YAML (JSON values are YAML flow values), a key written twice if asked."""
    lines = [f"{json.dumps(key)}: {json.dumps(value, allow_nan=True)}"
             for key, value in job.items()]
    if duplicate is not None and duplicate in job:
        lines.append(f"{json.dumps(duplicate)}: {json.dumps(job[duplicate])}")
    return "\n".join(lines) + "\n"


# -- the mutations ------------------------------------------------------------------------------

ODD_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12) | \
    st.sampled_from(["\x1b[2J", "\x07", "a\nb", "\u202e", "\U0001F600", "{{ 7 * 7 }}",
                     "a@x, b@y", "", " ", "../../etc/passwd", "*", "x" * 300,
                     "a\x00b", "x/" * 2100, "a..b", "x" * 64 + ".org", "/", "reports/",
                     "..", ".", "Grüße€", "a\r\nb"])
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2, 10**6), st.just(10**30),
                   st.floats(allow_nan=True, allow_infinity=True), ODD_TEXT,
                   st.lists(st.integers(0, 3), max_size=3),
                   st.builds(lambda: {"a": 1}), st.builds(lambda: [[1]]))  # fresh objects
SNIPPETS = st.sampled_from([
    "{{ 1 // 0 }}", "{{ nope }}", "{% for %}", "{{ name * 3 }}", "{{ count + 1 }}",
    "{% include 'missing.j2' %}", "{{ recipient.nope.deeper }}", "{{ data.sales.nope[0] }}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "{{ range(10**6)|list|length }}",
    "{{ 'x' * 10**8 }}", "{{ ''.__class__ }}", "{{ name|center(10**9) }}", "{{ 2 ** 10**6 }}",
    "{% raw %}", "{{ name.encode() }}", "\x1b[31m", "{{ (data.sales.north * 1000)|length }}",
    "{{ '%1000000000d' % 1 }}", "{{ '%*d'|format(10**9, 1) }}", "{{ name|format(1) }}",
    "{{ '{:>1000000000}'.format(1) }}", "{% include name %}", "{{ 10 / count|int }}",
])



@st.composite
def mutations(draw: st.DrawFn) -> list[tuple[str, Any]]:
    kinds = st.sampled_from(["delete", "retype", "duplicate", "smtp", "csv", "people",
                             "json", "template", "attachment", "schedule", "place",
                             "encoding", "special"])
    return draw(st.lists(st.tuples(kinds, st.integers(0, 10**6)), min_size=1, max_size=3))


def _apply(kind: str, seed: int, job: dict[str, Any], files: dict[str, str | bytes],
           draw: st.DrawFn) -> str | None:
    """Mutate ``job`` and ``files`` in place; returns a key to write twice, if any."""
    keys = list(job)
    key = keys[seed % len(keys)]
    if kind == "delete":
        del job[key]
    elif kind == "retype":
        job[key] = draw(VALUES)
    elif kind == "duplicate":
        return key
    elif kind == "smtp" and isinstance(job.get("smtp"), dict):
        smtp_keys = ["port", "timeout", "security", "rate", "max_messages_per_connection",
                     "password_env", "password_command", "host", "retry", "username",
                     "max_failures", "ca_file"]
        job["smtp"][smtp_keys[seed % len(smtp_keys)]] = draw(VALUES)
    elif kind == "csv":
        header = draw(st.sampled_from([["email", "name", "region", "email"],
                                       ["email", "", "region", "count"],
                                       ["email", "name", "region"],
                                       ["email", "name", " name", "region", "count"]]))
        text = _csv(PEOPLE, header)
        files["people.csv"] = draw(st.sampled_from([
            text, text + "dan@example.org\n", text + "dan@example.org,Dan,north,1,extra\n",
            "", text.encode() + b"\xff\xfe,x\n", text + '"unclosed,\n', text * 2]))
    elif kind == "people":
        people = [dict(p) for p in PEOPLE]
        person = people[seed % len(people)]
        person[draw(st.sampled_from(["name", "email", "region", "count"]))] = draw(ODD_TEXT)
        if draw(st.booleans()):
            files["people.csv"] = _csv(people)
        else:  # JSON recipients can carry what CSV cannot: a lone surrogate, nesting, numbers
            person["name"] = draw(st.sampled_from([person["name"], "\ud800", ["x"], 10**30]))
            files["people.json"] = json.dumps(people)
            job["recipients"] = "people.json"
    elif kind == "json":
        files["sales.json"] = draw(st.sampled_from([
            "{", '{"north": [], "north": []}', '{"north": NaN}', "[" * 500 + "]" * 500,
            '{"north": [{"units": 1}]}', "\ud800".encode("utf-8", "surrogatepass"), "null"]))
    elif kind == "template":
        name = draw(st.sampled_from(["text.j2", "html.j2"]))
        text = str(files[name])
        at = seed % (len(text) + 1)
        files[name] = text[:at] + draw(SNIPPETS) + text[at:]
    elif kind == "schedule":
        job["schedule"] = draw(st.sampled_from([
            "every 99999999999999999999 minutes", "every 10000000 weeks", "every 0 days",
            "every day at 25:00", "every monday", "every day at 07:30 Mars/Olympus",
            "every 2 weeks", "every weekday at 08:00 Europe/Paris"]) | ODD_TEXT)
    elif kind == "place":  # where the report, the outbox and the batch's files go
        job[draw(st.sampled_from(["report", "outbox", "batch", "state_dir"]))] = draw(
            st.sampled_from(["/", "reports/", "{{ '' }}", "..", "r/{{ batch }}/..",
                             "{{ ' ' }}", "folder", "{{ job }}/"]) | ODD_TEXT)
        files["folder.json/x"] = "a folder where a report file would go"
    elif kind == "encoding":
        job["recipients"] = {"file": "people.csv", "encoding": draw(st.sampled_from([
            "rot13", "base64", "utf-16", "utf-32", "punycode", "idna", "cp1252", "hex"]))}
        if draw(st.booleans()):
            files["people.csv"] = _csv(PEOPLE).encode(draw(st.sampled_from(
                ["utf-16-le", "utf-16", "utf-32-be"])))
    elif kind == "special":  # a file the job names is a folder, a pipe or a device
        files["people.csv"] = draw(st.sampled_from([FOLDER, FIFO]))
        if draw(st.booleans()):
            job["recipients"] = draw(st.sampled_from(["/dev/null", "/dev/zero", "."]))
    elif kind == "attachment":
        files[draw(st.sampled_from(["files/north/../../../x.pdf", "files/south/two.pdf",
                                    "files/north/\u00e9\u00e9 \U0001F600.pdf"]))] = b"%PDF"
        job["attachments"] = [draw(st.sampled_from(["files/**/*.pdf", "files/{{ name }}/*",
                                                    "/etc/hostname", "{{ region }}"]))]
    return None


FOLDER, FIFO = object(), object()  # stand-ins for a folder and a named pipe in ``files``


def _write(folder: Path, job: dict[str, Any], files: dict[str, Any],
           duplicate: str | None) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is FOLDER:
            path.mkdir()
        elif content is FIFO:
            os.mkfifo(path) if hasattr(os, "mkfifo") else path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    path = folder / "job.yaml"
    path.write_text(_yaml(job, duplicate), encoding="utf-8")
    return path


def _reports(folder: Path) -> Iterator[Path]:
    yield from (folder / "reports").glob("*.json") if (folder / "reports").is_dir() else ()


@pytest.fixture(scope="module")
def server(ca: Any) -> Iterator[SmtpTestServer]:
    started = SmtpTestServer(ca).start()
    yield started
    started.stop()


@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 40,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(changes=mutations(), command=st.sampled_from(["check", "run --dry-run", "run"]),
       data=st.data())
def test_a_mutated_job_folder_never_breaks_a_promise(server, ca_file, monkeypatch, capsys,
                                                      changes, command, data):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    server.reset()
    job, files = _job(server, ca_file), _files()
    duplicate = None
    for kind, seed in changes:
        duplicate = _apply(kind, seed, job, files, data.draw) or duplicate
    with tempfile.TemporaryDirectory(prefix="mailbatch-robust-") as tmp:
        folder = Path(tmp)
        path = _write(folder, job, files, duplicate)
        monkeypatch.chdir(folder)
        capsys.readouterr()
        code = main([*command.split(), "-q", str(path)])
        out, err = capsys.readouterr()

        assert code in DOCUMENTED, err
        assert "Traceback" not in out + err
        assert all(c.isprintable() or c in "\n\t" for c in err), repr(err)
        if code >= 2:
            assert err.startswith("mailbatch: error: "), err
        mail = [m for m in server.messages if m.rcpt_tos != [OWNER]]  # not notify summaries
        if code not in SENT or command != "run":
            assert mail == [], (code, err)
        if command != "run":
            assert server.messages == [], (code, err)
        if command != "run":
            assert server.connections == 0, (code, err)
        for report in _reports(folder):
            json.loads(report.read_bytes().decode("utf-8"))
            with report.with_suffix(".csv").open(encoding="utf-8", newline="") as file:
                rows = list(csv.DictReader(file))
            assert all(None not in row for row in rows)
