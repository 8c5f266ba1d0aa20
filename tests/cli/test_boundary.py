"""The CLI boundary: a bug is one line, exit 70 and a crash log, never a traceback; a closed
stdout exits quietly; control characters from recipient data never reach the terminal raw; a
password pasted into the wrong key is never echoed."""

from __future__ import annotations

import logging
import os
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


def _mailbatch(*args: str, cwd=None, env=None, **streams) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailbatch", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=env, check=False,
                          stdin=subprocess.DEVNULL, **streams)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
@pytest.mark.parametrize("command", [["check", "--json"], ["preview"], ["history"],
                                     ["status", "--json"]])
def test_output_into_a_full_disk_is_one_line_exit_74(tmp_path, command):
    job = offline_job(tmp_path, JOB)
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "mailbatch", *command, str(job)],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 74, done.stderr
    assert done.stderr.splitlines() == [
        "mailbatch: error: standard output: cannot write: No space left on device; check "
        "where the output goes (a full disk?)"]


@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_closed_stdout_or_stderr_changes_nothing_but_what_is_seen(tmp_path, closed):
    """``>&-`` or ``2>&-`` from a daemon or a cron wrapper: the exit code still tells."""
    job = offline_job(tmp_path, JOB.replace("{{ name }}", "{{ nme }}"))
    script = ("import os, sys, subprocess; os.close(1 if sys.argv[1] == 'stdout' else 2); "
              "sys.exit(subprocess.run([sys.executable, '-m', 'mailbatch', 'check', "
              "sys.argv[2]], stdin=subprocess.DEVNULL).returncode)")
    done = subprocess.run([sys.executable, "-c", script, closed, str(job)],
                          capture_output=False, timeout=60, check=False,
                          stdout=subprocess.DEVNULL if closed == "stderr" else None,
                          stderr=subprocess.DEVNULL if closed == "stdout" else None)
    assert done.returncode == EXIT_DATA


def test_text_the_terminal_cannot_encode_is_shown_escaped(tmp_path):
    job = offline_job(tmp_path, JOB.replace("name: Ann", "name: Zoë"))
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = _mailbatch("preview", str(job), env=env)
    assert done.returncode == 0, done.stderr
    assert "Zo\\xeb" in done.stdout


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_preview_port_out_of_range_is_a_usage_error(tmp_path, port):
    done = _mailbatch("preview", "--serve", "--port", port, str(offline_job(tmp_path, JOB)))
    assert done.returncode == 2 and "is not a port (0 to 65535" in done.stderr


def test_html_out_naming_a_folder_is_a_usage_error(tmp_path, capsys):
    job = offline_job(tmp_path, JOB.replace("text:", "html:"))
    assert main(["preview", "--html-out", str(tmp_path), str(job)]) == 2
    assert "--html-out names a folder" in capsys.readouterr().err


def test_a_deleted_current_folder_is_one_line_not_a_crash(tmp_path):
    job = offline_job(tmp_path, JOB)
    gone = tmp_path / "gone"
    gone.mkdir()
    script = ("import os, sys, subprocess; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); "
              "sys.exit(subprocess.run([sys.executable, '-m', 'mailbatch', 'check', "
              "sys.argv[2]]).returncode)")
    done = subprocess.run([sys.executable, "-c", script, str(gone), str(job)],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 74, done.stderr
    assert "the current folder cannot be used" in done.stderr
    assert "Traceback" not in done.stderr
