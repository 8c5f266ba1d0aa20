"""The command line: --version, --help with examples everywhere, progress, -q and -v."""

from __future__ import annotations

import argparse
import io
import logging
import re
import subprocess
import sys

import pytest

from mailbatch import __version__
from mailbatch.cli.main import build_parser, main
from mailbatch.cli.progress import Bar, LogLines, choose
from mailbatch.smtp.transport import Outcome
from tests.helpers import smtp_block, write_job

JOB = """
    from: "Reports <reports@example.org>"
    subject: "Report for {{ name }}"
    text: "Hello {{ name }}"
    recipients:
      - {email: ann@example.org, name: Ann}
      - {email: bob@example.org, name: Bob}
      - {email: cat@example.org, name: Cat}
"""
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def subcommands() -> list[str]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(action.choices)


# -- --version and --help ------------------------------------------------------------------------


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])

    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"mailbatch {__version__}\n"


def test_python_dash_m_mailbatch_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "mailbatch", "--version"], capture_output=True,
                          text=True, timeout=60, check=False)

    assert done.returncode == 0 and done.stdout == f"mailbatch {__version__}\n"


def test_main_help_lists_the_commands_with_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])

    out = capsys.readouterr().out
    assert "examples:" in out
    for command in subcommands():
        assert f"mailbatch {command} " in out


@pytest.mark.parametrize("command", subcommands())
def test_every_command_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])

    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert f"mailbatch {command}" in out.split("examples:", 1)[1]


def test_run_help_documents_the_exit_codes_and_test_sends(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])

    out = capsys.readouterr().out
    for code in ("4", "65", "69", "75", "77", "78"):
        assert re.search(rf"\b{code}\b", out)
    assert "--to ADDRESS" in out and "--limit N" in out


@pytest.mark.parametrize("other", [["--new-batch"], ["--dry-run"], ["--to", "me@example.org"]])
def test_batch_option_does_not_combine_with_new_batch_dry_run_or_a_test_send(other, tmp_path,
                                                                            capsys):
    job = write_job(tmp_path, JOB + "smtp: {host: 127.0.0.1}\n")

    assert main(["run", str(job), "--batch", "2026-11-30", *other]) == 2
    assert "--batch" in capsys.readouterr().err


# -- progress, -q and -v -------------------------------------------------------------------------


@pytest.fixture
def job_path(smtp_server, ca_file, tmp_path, password_env):
    return write_job(tmp_path, JOB + smtp_block(smtp_server, ca_file))


def test_off_a_terminal_a_run_prints_only_its_summary_line(job_path, smtp_server, capsys):
    assert main(["run", str(job_path)]) == 0

    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("job: batch ")
    assert "3 sent; report: " in err


@pytest.mark.parametrize("argv", [["run", "-v"], ["-v", "run"]])
def test_off_a_terminal_verbose_progress_is_timestamped_log_lines(argv, job_path, capsys):
    assert main([*argv, str(job_path)]) == 0

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "] " in line and "/3]" in line]
    assert len(lines) == 3
    for n, (line, who) in enumerate(zip(lines, ["ann", "bob", "cat"], strict=True), start=1):
        assert re.match(rf"{STAMP} INFO \[{n}/3\] {who}@example.org: sent 250 ", line), line
    assert "\r" not in err and "\x1b" not in err


def test_verbose_says_each_refusal_and_the_summary_once(job_path, smtp_server, capsys):
    smtp_server.set_faults(reject_pattern="bob@")

    assert main(["run", "-v", str(job_path)]) == 1

    err = capsys.readouterr().err
    bob = [line for line in err.splitlines() if "bob@example.org" in line]
    assert len(bob) == 1, err  # a warning line, not also a progress line
    assert "WARNING bob@example.org: refused 550" in err
    assert len([line for line in err.splitlines() if "report: " in line]) == 1, err


@pytest.mark.parametrize("argv", [["run", "-q"], ["-q", "run"], ["--quiet", "run"]])
def test_quiet_prints_nothing_when_every_message_is_sent(argv, job_path, smtp_server, capsys):
    assert main([*argv, str(job_path)]) == 0

    assert capsys.readouterr() == ("", "")
    assert len(smtp_server.messages) == 3


def test_quiet_still_prints_errors(smtp_server, ca_file, tmp_path, capsys):
    job = write_job(tmp_path, JOB + smtp_block(smtp_server, ca_file, password_env="UNSET_VAR"))

    assert main(["run", "-q", str(job)]) == 78

    assert "UNSET_VAR is not set" in capsys.readouterr().err


def test_on_a_terminal_a_run_draws_a_bar_then_the_summary_on_its_own_line(
        job_path, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    assert main(["run", str(job_path)]) == 0

    shown = terminal.getvalue()
    assert "\r\x1b[K[" + "#" * 30 + "] 3/3 100%  3 sent\n" in shown
    assert shown.splitlines()[-1].startswith("job: batch ")


def test_the_bar_redraws_at_most_every_interval_and_always_at_the_end():
    clock = iter([0.0, 0.01, 0.02, 0.5]).__next__
    stream = Terminal()
    bar = Bar(stream, width=10, interval=0.1, clock=clock)

    for done in range(1, 5):
        bar(done, 4, f"r{done}@example.org", Outcome("sent", 250, "ok"))
    bar.close()

    draws = stream.getvalue().split("\r\x1b[K")[1:]
    assert draws == ["[##--------] 1/4  25%  1 sent", "[##########] 4/4 100%  4 sent\n"]


def test_a_log_record_clears_the_bar_line_before_it_is_written():
    stream = Terminal()
    logger = logging.getLogger("mailbatch.test-bar")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        bar = Bar(stream, width=4, clock=lambda: 0.0).attach(logger)
        bar(1, 2, "a@example.org", Outcome("sent", 250, "ok"))
        logger.warning("b@example.org: refused 550")
        bar.close()
    finally:
        logger.removeHandler(handler)

    assert stream.getvalue() == ("\r\x1b[K[##--] 1/2  50%  1 sent"
                                 "\r\x1b[Kb@example.org: refused 550\n")
    assert handler.filters == []  # detached on close


@pytest.mark.parametrize(("tty", "quiet", "verbose", "debug", "kind"), [
    (True, False, 0, False, Bar),
    (True, False, 1, False, LogLines),
    (True, False, 0, True, LogLines),
    (False, False, 0, False, LogLines),
    (True, True, 0, False, type(None)),
    (False, True, 2, False, type(None)),
])
def test_the_progress_display_follows_the_terminal_and_the_flags(tty, quiet, verbose, debug,
                                                                 kind):
    stream = Terminal() if tty else io.StringIO()

    assert type(choose(stream, quiet=quiet, verbose=verbose, debug=debug)) is kind


def test_a_dumb_terminal_gets_log_lines_not_a_bar(monkeypatch):
    monkeypatch.setenv("TERM", "dumb")

    assert type(choose(Terminal(), quiet=False, verbose=0)) is LogLines


def test_with_no_color_the_bar_is_drawn_and_cleared_without_escape_sequences(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("TERM", raising=False)
    stream = Terminal()
    bar = choose(stream, quiet=False, verbose=0)
    assert isinstance(bar, Bar)
    bar.width = 4

    bar(1, 2, "a@example.org", Outcome("sent", 250, "ok"))
    bar.clear()
    bar(2, 2, "b@example.org", Outcome("sent", 250, "ok"))
    bar.close()

    shown = stream.getvalue()
    assert "\x1b" not in shown
    first = "[##--] 1/2  50%  1 sent"
    assert shown == f"\r{first}\r{' ' * len(first)}\r\r[####] 2/2 100%  2 sent\n"


def test_main_leaves_logging_as_it_found_it(job_path, capsys):
    logger = logging.getLogger("mailbatch")
    before = (list(logger.handlers), logger.level, logger.propagate)

    assert main(["run", "-v", "--debug-smtp", str(job_path)]) == 0
    assert main(["check", str(job_path)]) == 0

    assert (list(logger.handlers), logger.level, logger.propagate) == before
    assert logging.getLogger("mailbatch.smtp.session").level == logging.NOTSET


def test_a_run_stopped_after_sending_began_prints_its_error_then_its_summary_line(
        smtp_server_factory, ca_file, tmp_path, capsys, monkeypatch):
    from tests.batchjobs import batch_job
    from tests.helpers import PASSWORD_ENV
    from tests.smtpserver import PASSWORD

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    server = smtp_server_factory(reject_pattern="^user")  # every recipient refused
    job = batch_job(tmp_path, server, ca_file, 6, max_failures=2, extra="batch: fixed\n")

    code = main(["run", "-q", str(job)])

    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 5
    assert lines[0].startswith("mailbatch: error: stopped: 2 messages in a row were refused")
    assert "run the same command again to resume batch fixed" in lines[0]
    assert lines[-1].startswith("job: batch fixed: 4 pending, 2 refused; report: ")
