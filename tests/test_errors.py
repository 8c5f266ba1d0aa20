"""The bad-input corpus: every kind of broken job or input gets one clear message, no traceback,
the documented exit code, and nothing reaches the server.

Each case is a job file (with the smtp block pointed at the real test server), some extra
files, and what must appear in the error. Locations are part of the message: ``job.yaml:6``,
``smtp.port``, the recipient.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mailbatch.cli.main import main
from tests.helpers import PASSWORD_ENV, smtp_block, write_job
from tests.smtpserver import PASSWORD, SmtpTestServer

# The smtp block is appended last, so the line numbers of these keys never move:
#  1 from, 2 subject, 3 text, 4 recipients, 5 ann, 6 bob.
FROM = 'from: "Reports <reports@example.org>"\n'
SUBJECT = 'subject: "Report for {{ name }}"\n'
TEXT = 'text: "Hello {{ name }}"\n'
RECIPIENTS = ("recipients:\n"
              "  - {email: ann@example.org, name: Ann}\n"
              "  - {email: bob@example.org, name: Bob}\n")
HEAD = FROM + SUBJECT + TEXT + RECIPIENTS


@dataclass(frozen=True)
class Case:
    name: str
    job: str | None  # the job file without its smtp block; None: no job file at all
    code: int
    expect: tuple[str, ...]  # every one of these appears in the error output
    files: dict[str, str | bytes] = field(default_factory=dict)
    smtp: dict[str, Any] = field(default_factory=dict)  # overrides for smtp_block()
    commands: tuple[str, ...] = ("run", "check")
    setup: Callable[[Path, pytest.MonkeyPatch], None] | None = None
    secret: str | None = None  # must never appear in the output
    server: str = "tls"
    with_smtp: bool = True  # False: the job file has no smtp block appended


def _unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An attachment nobody may read. Root reads anything chmod says, so as root the test
    points attachments_root at a kernel file that refuses reads even to root."""
    path = tmp_path / "files" / "secret.pdf"
    path.chmod(0)
    if os.geteuid() == 0:
        if os.access("/proc/sys/vm/drop_caches", os.R_OK):
            pytest.skip("running as root with no unreadable file available")
        job = tmp_path / "job.yaml"
        job.write_text(job.read_text().replace('attachments_root: "files"',
                                               'attachments_root: "/proc/sys/vm"')
                       .replace("secret.pdf", "drop_caches"))


def _no_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


def _wrong_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")


def _world_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "password.txt").chmod(0o644)


def _closed_port() -> int:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


BOMB = "".join(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join(
    [f"*{chr(96 + i)}"] * 9 if i else ['"lol"'] * 9) + "]\n" for i in range(9))
PASTED = "Tr0ub4dor-Zq8!x"  # a password pasted where the command goes


def _no_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dry run or test send must not read the secret: make reading it fail loudly."""
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


CONFIG, DATA, UNAVAILABLE, NOPERM, USAGE = 78, 65, 69, 77, 2
CONNECT = ("run", "check --connect")

CASES = [
    # -- the job file itself ------------------------------------------------------------------
    Case("yaml syntax error", FROM + 'subject: "Report for {{ name }}\ntext: x\n' + RECIPIENTS,
         CONFIG, ("job.yaml:", "YAML syntax error", "fix the YAML syntax")),
    Case("yaml indentation error", FROM + "subject: x\n  text: y\n" + RECIPIENTS, CONFIG,
         ("job.yaml:3", "YAML syntax error")),
    Case("duplicate key", HEAD + 'subject: "again"\n', CONFIG,
         ("job.yaml:7", "duplicate key 'subject'")),
    Case("job file not found", None, CONFIG, ("job.yaml", "file not found")),
    Case("job file not utf-8", HEAD.replace("Ann", "Ann\udcff"), CONFIG,
         ("job.yaml", "not UTF-8", "save it as UTF-8")),
    Case("unknown top-level key", HEAD + "atachments: []\n", CONFIG,
         ("job.yaml:7", "atachments", "unknown key")),
    Case("unknown smtp key", HEAD, CONFIG, ("smtp.hots", "unknown key"),
         smtp={"hots": "mail.example.org"}),
    Case("wrong type for port", HEAD, CONFIG, ("smtp.port", "must be a whole number, not text"),
         smtp={"port": "465x"}),
    Case("wrong type for attachments", HEAD + 'attachments: "report.pdf"\n', CONFIG,
         ("job.yaml:7", "attachments", "must be a list, not text")),
    Case("wrong type for verify_certificate", HEAD, CONFIG,
         ("smtp.verify_certificate", "must be true or false"),
         smtp={"verify_certificate": "no"}),
    Case("missing from", SUBJECT + TEXT + RECIPIENTS, CONFIG,
         ("job.yaml", "from", "is required but missing")),
    Case("missing subject", FROM + TEXT + RECIPIENTS, CONFIG,
         ("job.yaml", "subject", "is required but missing")),
    Case("missing smtp host", HEAD, CONFIG, ("smtp.host", "is required but missing"),
         smtp={"host": None}),
    Case("no body at all", FROM + SUBJECT + RECIPIENTS, CONFIG,
         ("job.yaml", "no body", "text_template")),
    Case("malformed sender", HEAD.replace("reports@example.org", "reports at example"), CONFIG,
         ("job.yaml:1", "from", "is not an email address")),
    Case("unknown security mode", HEAD, CONFIG,
         ("smtp.security", "unknown security mode 'ssl'", "starttls"), smtp={"security": "ssl"}),
    Case("port out of range", HEAD, CONFIG, ("smtp.port", "between 1 and 65535"),
         smtp={"port": 70000}),
    Case("rate that is not a rate", HEAD, CONFIG, ("smtp.rate", "'fast' is not a rate"),
         smtp={"rate": "fast"}),
    Case("header that may not be set", HEAD + "headers:\n  Bcc: x@example.org\n", CONFIG,
         ("headers.Bcc", "is not a header you can set")),
    Case("data file missing", HEAD + "data:\n  sales: sales.json\n", CONFIG,
         ("sales.json", "data file for 'sales' not found")),
    # -- recipients ---------------------------------------------------------------------------
    Case("empty inline recipient list", FROM + SUBJECT + TEXT + "recipients: []\n", CONFIG,
         ("job.yaml:4", "recipient list is empty")),
    Case("recipients csv with a header only", FROM + SUBJECT + TEXT + "recipients: r.csv\n",
         CONFIG, ("r.csv", "header but no recipients"), files={"r.csv": "email,name\n"}),
    Case("recipients csv without the address column", FROM + SUBJECT + TEXT +
         "recipients: r.csv\n", CONFIG, ("r.csv:1", "no 'email' column", "address_field"),
         files={"r.csv": "mail,name\nann@example.org,Ann\n"}),
    Case("recipients csv not utf-8", FROM + SUBJECT + TEXT + "recipients: r.csv\n", CONFIG,
         ("r.csv:3", "not UTF-8", "save the file as UTF-8"),
         files={"r.csv": b"email,name\nann@example.org,Ann\nbob@example.org,Bj\xf6rn\n"}),
    Case("recipients file missing", FROM + SUBJECT + TEXT + "recipients: nobody.csv\n", CONFIG,
         ("nobody.csv", "recipients file not found")),
    Case("recipient without an address", HEAD.replace("email: bob@example.org, ", ""), CONFIG,
         ("job.yaml:6", "has no 'email' value")),
    Case("duplicate recipients", HEAD + "  - {email: ann@example.org, name: Ann again}\n", DATA,
         ("job.yaml:7", "ann@example.org is listed twice (first at", "job.yaml:5)",
          "remove one")),
    Case("duplicate recipients differing in case",
         HEAD + "  - {email: BOB@Example.org, name: Bob}\n", DATA,
         ("job.yaml:7", "BOB@Example.org is listed twice", "job.yaml:6")),
    Case("malformed recipient address", HEAD.replace("bob@example.org", "bob(at)example"),
         DATA, ("job.yaml:6", "'bob(at)example' is not a valid email address", "nothing was sent")),
    # -- templates ----------------------------------------------------------------------------
    Case("template file not found", FROM + SUBJECT + "text_template: body.txt.j2\n" + RECIPIENTS,
         CONFIG, ("job.yaml:3", "text_template", "'body.txt.j2' not found")),
    Case("template syntax error in a file", FROM + SUBJECT + "text_template: body.txt.j2\n" +
         RECIPIENTS, CONFIG, ("body.txt.j2:2", "template syntax error"),
         files={"body.txt.j2": "Hello {{ name }},\n{% if %}\n"}),
    Case("template syntax error in an included file", FROM + SUBJECT +
         "text_template: body.txt.j2\n" + RECIPIENTS, CONFIG,
         ("footer.txt.j2:2", "template syntax error"),
         files={"body.txt.j2": "Hello {{ name }},\n{% include 'footer.txt.j2' %}\n",
                "footer.txt.j2": "Regards\n{% if %}\n"}),
    Case("included template not utf-8", FROM + SUBJECT + "text_template: body.txt.j2\n" +
         RECIPIENTS, CONFIG, ("footer.txt.j2", "not UTF-8", "save it as UTF-8"),
         files={"body.txt.j2": "Hello {{ name }},\n{% include 'footer.txt.j2' %}\n",
                "footer.txt.j2": b"Gr\xfc\xdfe\n"}),
    Case("template syntax error inline", FROM + 'subject: "Report {{ name "\n' + TEXT +
         RECIPIENTS, CONFIG, ("job.yaml", "subject", "template syntax error")),
    Case("undefined variable", FROM + 'subject: "Sales for {{ region }}"\n' + TEXT + RECIPIENTS,
         DATA, ("job.yaml:5 (ann@example.org)", "subject", "'region' is undefined",
                "job.yaml:6 (bob@example.org)")),
    # -- attachments --------------------------------------------------------------------------
    Case("attachment pattern matching nothing", HEAD + 'attachments: ["reports/{{ name }}.pdf"]\n',
         DATA, ("(ann@example.org)", "'reports/Ann.pdf' matches no file", "optional: true"),
         files={"reports/Bob.pdf": b"%PDF"}),
    Case("unreadable attachment", HEAD + 'attachments_root: "files"\n'
         'attachments: ["secret.pdf"]\n', DATA, ("(ann@example.org)", "cannot be read"),
         files={"files/secret.pdf": b"%PDF"}, setup=_unreadable),
    Case("attachment escaping its root through a recipient field",
         HEAD.replace("name: Bob}", "name: Bob, dir: ../../../../../../etc}") +
         'attachments: ["{{ dir | default(\'ok\') }}/passwd"]\n', DATA,
         ("(bob@example.org)", "outside the attachments root"), files={"ok/passwd": "fine"}),
    Case("header injection through a recipient field",
         HEAD.replace("name: Bob}", 'name: "Bob\\nBcc: victim@example.net"}'), DATA,
         ("job.yaml:6 (bob@example.org)", "subject contains a line break")),
    Case("invalid cc address from a recipient field",
         HEAD.replace("name: Bob}", "name: Bob, boss: nobody}") +
         'cc: "{{ boss | default(\'lead@example.org\') }}"\n', DATA,
         ("(bob@example.org)", "cc: 'nobody' is not an email address")),
    # -- passwords ----------------------------------------------------------------------------
    Case("password in the job file", HEAD, CONFIG,
         ("smtp.password", "must not be written in the job file", "password_env"),
         smtp={"password": "hunter2-secret", "password_env": None}, secret="hunter2-secret"),
    Case("password written where the variable name goes", HEAD, CONFIG,
         ("smtp.password_env", "NAME of an environment variable"),
         smtp={"password_env": "hunter2 secret!"}, secret="hunter2", commands=CONNECT),
    Case("missing password environment variable", HEAD, CONFIG,
         ("smtp.password_env", f"environment variable {PASSWORD_ENV} is not set"),
         setup=_no_env, commands=CONNECT),
    Case("password file readable by others", HEAD, CONFIG,
         ("password.txt", "smtp.password_file", "chmod 600"),
         smtp={"password_env": None, "password_file": "password.txt"},
         files={"password.txt": PASSWORD}, setup=_world_readable, secret=PASSWORD,
         commands=CONNECT),
    Case("password file missing", HEAD, CONFIG, ("pw.txt", "password file not found"),
         smtp={"password_env": None, "password_file": "pw.txt"}, commands=CONNECT),
    Case("password command failing", HEAD, CONFIG,
         ("smtp.password_command", "'false' failed with exit status 1"),
         smtp={"password_env": None, "password_command": "false"}, commands=CONNECT),
    Case("two password sources", HEAD, CONFIG, ("smtp.password_file", "give only one of"),
         smtp={"password_file": "password.txt"}),
    # -- the server ---------------------------------------------------------------------------
    Case("port that refuses connections", HEAD, UNAVAILABLE,
         ("127.0.0.1:", "connection refused", "smtp.port"), smtp={"port": "closed"},
         commands=CONNECT),
    Case("server certificate not trusted", HEAD, UNAVAILABLE,
         ("127.0.0.1:", "certificate is not trusted", "smtp.ca_file"), smtp={"ca_file": None},
         commands=CONNECT),
    Case("starttls required but not offered", HEAD, UNAVAILABLE,
         ("does not offer STARTTLS", "refusing to log in"), smtp={"security": "starttls"},
         server="plain-no-starttls", commands=CONNECT),
    Case("login refused", HEAD, NOPERM, ("login refused by 127.0.0.1 for mailer: 535",),
         setup=_wrong_password, secret="not-the-password", commands=CONNECT),
    # -- inputs nobody wrote a test for: one case per class of the outside corpus ---------------
    Case("recipients csv with a repeated column (wrong recipient)", FROM + SUBJECT + TEXT +
         "recipients: r.csv\n", CONFIG, ("r.csv:1", "column 3 ('email') repeats column 1"),
         files={"r.csv": "email,name,email\nann@example.org,Ann,eve@example.org\n"}),
    Case("to that renders empty for one recipient (render first)",
         HEAD.replace("name: Ann}", "name: Ann, boss: lead@example.org}") +
         "to: \"{{ boss | default('') }}\"\n", DATA,
         ("job.yaml:6 (bob@example.org)", "to renders empty")),
    Case("alias bomb in cc (unbounded)", HEAD + BOMB + "cc: *i\n", CONFIG,
         ("job.yaml:", "aliases (*name) expand to more than")),
    Case("range of a billion in a template (unbounded)",
         HEAD.replace(TEXT, 'text: "{% for i in range(10**9) %}{% endfor %}"\n'), DATA,
         ("(ann@example.org)", "text line 1: Range too big")),
    Case("a 4,000-digit port (unbounded)", HEAD, CONFIG, ("smtp.port", "between 1 and 65535"),
         smtp={"port": 10**4000}),
    Case("no smtp section (traceback)", HEAD, CONFIG, ("job.yaml", "smtp: is required"),
         with_smtp=False),
    Case("division by zero with recipient data (traceback)",
         HEAD.replace("name: Bob}", "name: Bob, count: 0}").replace("name: Ann}",
                                                                 "name: Ann, count: 2}") +
         'headers: {X-Share: "{{ 100 // count }}"}\n', DATA,
         ("job.yaml:6 (bob@example.org)", "headers.X-Share line 1", "ZeroDivisionError")),
    Case("dry run with notify and a render error (mail sent)",
         HEAD.replace("{{ name }}", "{{ nme }}") + "notify: owner@example.org\n", DATA,
         ("'nme' is undefined",), commands=("run --dry-run", "run --to me@example.org"),
         setup=_no_password),
    Case("password pasted as the password command (leak)", HEAD, CONFIG,
         ("smtp.password_command", "not found", "not shown"),
         smtp={"password_env": None, "password_command": PASTED}, secret=PASTED,
         commands=CONNECT),
    Case("control characters in recipient data (leak)",
         HEAD.replace("bob@example.org", '"bob\\e[2J@example.org"'), DATA,
         ("bob\\x1b[2J@example.org",), secret="\x1b"),
    Case("notify that is not an address (smaller)", HEAD + "notify: owner at example\n",
         CONFIG, ("job.yaml:7", "notify", "is not an email address")),
    Case("smtp of the wrong type (smaller)", HEAD + "smtp: [mail.example.org, 465]\n", CONFIG,
         ("job.yaml:7", "smtp: must be a mapping"), with_smtp=False),
    # -- inputs an outside audit found ending in a crash log, a hang or a wrong exit ----------
    Case("host the socket layer cannot encode (audit)", HEAD, CONFIG,
         ("smtp.host", "'mail..example.org' is not a host name"),
         smtp={"host": "mail..example.org"}, commands=CONNECT),
    Case("report rendering to a folder (audit)", HEAD + "report: reports/\n", CONFIG,
         ("report: renders to 'reports/'", "it names a folder")),
    Case("codec that is not a text encoding (audit)", FROM + SUBJECT + TEXT +
         "recipients: {file: r.csv, encoding: rot13}\n", CONFIG,
         ("job.yaml:4", "recipients.encoding", "unknown encoding 'rot13'"),
         files={"r.csv": "email,name\nann@example.org,Ann\n"}),
    Case("recipient list that is a named pipe (audit: hang)", FROM + SUBJECT + TEXT +
         "recipients: r.csv\n", CONFIG, ("r.csv", "is not a regular file"),
         setup=lambda tmp_path, _: os.mkfifo(tmp_path / "r.csv")),
    Case("recipient name that is a mapping (audit)", FROM + SUBJECT + TEXT +
         "recipients: r.json\n", CONFIG, ("r.json", "name: must be text, not a mapping"),
         files={"r.json": '[{"email": "ann@example.org", "name": {"first": "Ann"}}]'}),
    Case("password file that is not UTF-8 (audit)", HEAD, CONFIG,
         ("pw.bin", "smtp.password_file", "not UTF-8 text"),
         smtp={"password_env": None, "password_file": "pw.bin"}, files={"pw.bin": b"\xff\xfe"},
         setup=lambda tmp_path, _: (tmp_path / "pw.bin").chmod(0o600), commands=CONNECT),
    Case("attachment file name with a line break (audit)", HEAD + 'attachments: ["f/*"]\n', DATA,
         ("attachment a\\nb.txt contains a line break",), files={"f/a\nb.txt": b"x"}),
    # -- the command line ---------------------------------------------------------------------
    Case("preview of a recipient not in the list", HEAD, USAGE,
         ("job.yaml", "'carol@example.org' is not in the recipient list", "from 1 to 2"),
         commands=("preview --recipient carol@example.org",)),
    Case("preview of a position past the end", HEAD, USAGE,
         ("job.yaml", "no recipient number 3", "from 1 to 2"), commands=("preview -r 3",)),
    Case("limit without a test address", HEAD, USAGE, ("--limit", "add --to ADDRESS"),
         commands=("run --limit 2",)),
    Case("debug-smtp for check without connect", HEAD, USAGE, ("--debug-smtp needs --connect",),
         commands=("check --debug-smtp",)),
]


def _runs() -> list[Any]:
    return [pytest.param(case, command, id=f"{case.name} [{command}]")
            for case in CASES for command in case.commands]


@pytest.fixture(scope="module")
def servers(ca: Any) -> Iterator[dict[str, SmtpTestServer]]:
    """One server per security mode for the whole corpus; reset before each case."""
    started = {mode: SmtpTestServer(ca, security=mode).start()  # type: ignore[arg-type]
               for mode in ("tls", "plain-no-starttls")}
    yield started
    for server in started.values():
        server.stop()


@pytest.mark.parametrize(("case", "command"), _runs())
def test_bad_input_gets_one_clear_message_and_its_exit_code_and_nothing_is_sent(
        case: Case, command: str, servers: dict[str, SmtpTestServer], ca_file: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    server = servers[case.server]
    server.reset()
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    settings = {**case.smtp}
    if settings.get("port") == "closed":
        settings["port"] = _closed_port()
    job = tmp_path / "job.yaml"
    if case.job is not None:
        trusted = settings.pop("ca_file", ca_file)
        text = case.job + (smtp_block(server, trusted, **settings) if case.with_smtp else "")
        write_job(tmp_path, "placeholder\n", case.files)
        if "\udcff" in text:  # stands for a byte that is not UTF-8
            job.write_bytes(text.encode("utf-8", "surrogateescape"))
        else:
            job.write_text(text, encoding="utf-8")
    if case.setup:
        case.setup(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)

    code = main([*command.split(), str(job)])

    out, err = capsys.readouterr()
    assert code == case.code, err
    error_lines = [line for line in err.splitlines() if line.startswith("mailbatch: error: ")]
    assert len(error_lines) == 1, err
    for expected in case.expect:
        assert expected in err, f"{expected!r} not in {err!r}"
    assert "Traceback" not in out + err
    assert len(err.strip().splitlines()) <= 4, err  # one line, or a head and a few failures
    if case.secret:
        assert case.secret not in out + err
    assert server.messages == []
