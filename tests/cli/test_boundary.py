"""The CLI boundary: a bug is one line, exit 70 and a crash log, never a traceback; a closed
stdout exits quietly; control characters from recipient data never reach the terminal raw; a
password pasted into the wrong key is never echoed."""

from __future__ import annotations

import logging
import stat
import subprocess
import sys

import pytest

from mailbatch import load_job
from mailbatch.cli.main import main
from mailbatch.errors import EXIT_CONFIG, EXIT_DATA, EXIT_SOFTWARE, JobError, UsageError
from mailbatch.smtp.credentials import get_secret
from tests.pipeline import offline_job

JOB = """
    from: reports@example.org
    subject: "Report for {{ name }}"
    text: "Hello {{ name }}\\n"
    recipients:
      - {email: ann@example.org, name: Ann}
"""


def test_an_unexpected_error_is_one_line_exit_70_and_a_private_crash_log(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))

    def broken(*args, **kwargs):
        raise RuntimeError("something no input should cause")

    monkeypatch.setattr("mailbatch.cli.check.check", broken)
    job = offline_job(tmp_path, JOB)
    code = main(["check", str(job)])
    err = capsys.readouterr().err
    assert code == EXIT_SOFTWARE
    assert "Traceback" not in err
    [line] = err.splitlines()
    assert line.startswith("mailbatch: error: internal error (RuntimeError); this is a bug")
    log = tmp_path / "state" / "mailbatch" / line.rpartition("the traceback is in ")[2]
    assert log.is_file() and stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    assert "Traceback" in text and "something no input should cause" in text
    assert f"command: mailbatch check {job}" in text


def test_a_bug_logged_on_the_way_shows_a_crash_log_not_a_traceback(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    job = offline_job(tmp_path, JOB)

    def broken(*args, **kwargs):
        try:
            raise KeyError("inside")
        except KeyError:
            logging.getLogger("mailbatch.cli").exception("something failed quietly")
        raise UsageError("and then a plain error")

    monkeypatch.setattr("mailbatch.cli.check.check", broken)
    assert main(["check", str(job)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "something failed quietly" in err
    assert "(the traceback is in " in err


def test_preview_into_a_closed_pipe_exits_quietly(tmp_path):
    job = offline_job(tmp_path, JOB.replace('"Hello {{ name }}\\n"',
                                            '"{% for i in range(20000) %}line {{ i }}\\n'
                                            '{% endfor %}"'))
    proc = subprocess.Popen([sys.executable, "-m", "mailbatch", "preview", str(job)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 141
    assert err == ""


def test_control_characters_from_recipient_data_are_escaped_in_error_lines(tmp_path, capsys):
    job = offline_job(tmp_path, JOB + '  - {email: "bob\\e[2J\\a@example.org", name: Bob}\n'
                      '  - {email: cid@example.org, name: "C\\e]0;pwned\\a"}\n'
                      "cc: '{{ name }}'\n")
    code = main(["check", str(job)])
    err = capsys.readouterr().err
    assert code == EXIT_DATA, err
    assert "\x1b" not in err and "\x07" not in err
    assert "\\x1b[2J\\x07" in err and "C\\x1b]0;pwned\\x07" in err


SECRET = "Tr0ub4dor-Zq8!x"


@pytest.mark.parametrize("command", ["check", "check --connect", "run"])
@pytest.mark.parametrize("value", [SECRET, f"'{SECRET}", f"[{SECRET}, x]", f"./{SECRET}"])
def test_a_password_pasted_as_the_password_command_is_never_echoed(
        tmp_path, capsys, monkeypatch, command, value):
    job = offline_job(tmp_path, JOB)
    job.write_text(job.read_text().replace("password_env: MAILBATCH_TEST_PASSWORD",
                                           f'password_command: "{value}"' if "[" not in value
                                           else f"password_command: {value}"))
    if value.startswith("./"):  # a file by that name that cannot be run
        (tmp_path / SECRET).write_text("not a program")
        monkeypatch.chdir(tmp_path)
    code = main([*command.split(), str(job)])
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    assert code in (0, EXIT_CONFIG, 69), err


@pytest.mark.parametrize("value", [SECRET, f"./{SECRET}"])
def test_reading_the_secret_from_a_command_that_is_the_password_never_echoes_it(
        tmp_path, monkeypatch, value):
    job = offline_job(tmp_path, JOB)
    job.write_text(job.read_text().replace("password_env: MAILBATCH_TEST_PASSWORD",
                                           f'password_command: "{value}"'))
    (tmp_path / SECRET).write_text("not a program")
    monkeypatch.chdir(tmp_path)
    smtp = load_job(job).smtp
    with pytest.raises(JobError, match=r"smtp\.password_command: the command") as caught:
        get_secret(smtp, job)
    assert SECRET not in str(caught.value)
