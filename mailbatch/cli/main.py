"""The command line: its arguments, its logging, and its boundary (every error one line).

What each command does is in commands.py; heavy modules are imported inside the command
that needs them, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from mailbatch._version import __version__
from mailbatch.batch.signals import stop_on_signals
from mailbatch.cli.boundary import (
    EscapingFormatter,
    GuardedStdout,
    crash_log,
    printable,
    quiet_broken_pipe,
    standard_streams,
)
from mailbatch.cli.commands import (
    cmd_check,
    cmd_history,
    cmd_init,
    cmd_preview,
    cmd_run,
    cmd_schedule,
    cmd_status,
)
from mailbatch.cli.helptext import (
    EPILOG_CHECK,
    EPILOG_HISTORY,
    EPILOG_INIT,
    EPILOG_MAIN,
    EPILOG_PREVIEW,
    EPILOG_RUN,
    EPILOG_SCHEDULE,
    EPILOG_STATUS,
)
from mailbatch.cli.journald import use_journal_format
from mailbatch.errors import (
    EXIT_INTERRUPTED,
    EXIT_SOFTWARE,
    MailbatchError,
    StateError,
)

if TYPE_CHECKING:
    pass

__all__ = ["main"]

log = logging.getLogger("mailbatch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailbatch",
        description="Send batches of personalised report emails from a YAML job file.",
        epilog=EPILOG_MAIN, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mailbatch {__version__}")
    # Also before the command (mailbatch -q run JOB), as people write them for other tools;
    # their own dests, since a subcommand's defaults would overwrite what was parsed here.
    parser.add_argument("-q", "--quiet", dest="quiet_before", action="store_true",
                        help="print errors only (also after the command)")
    parser.add_argument("-v", "--verbose", dest="verbose_before", action="count", default=0,
                        help="print progress details, -vv for debug (also after the command)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    common.add_argument("-v", "--verbose", action="count", default=0,
                        help="print progress details (-vv for debug)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run", parents=[common], help="send (or resume) a batch",
        description="Render every message, then send them over one SMTP session and write the "
                    "delivery report. Re-running the same batch resumes it.",
        epilog=EPILOG_RUN, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("job", help="the job file (YAML)")
    run.add_argument("--dry-run", action="store_true",
                     help="write each message as an .eml file to the outbox; send nothing")
    run.add_argument("--new-batch", action="store_true",
                     help="start a fresh batch instead of resuming the current one, even while "
                          "an older batch is unfinished")
    run.add_argument("--batch", metavar="NAME",
                     help="finish the job's batch NAME (e.g. yesterday's, left unfinished), "
                          "rendered with the dates it began with")
    run.add_argument("--resend-uncertain", action="store_true",
                     help="resend messages whose delivery is uncertain (may duplicate them)")
    run.add_argument("--debug-smtp", action="store_true",
                     help="log the SMTP conversation (credentials redacted)")
    run.add_argument("--to", metavar="ADDRESS", type=_address,
                     help="test send: send the messages to ADDRESS only, subject marked [TEST]; "
                          "the batch itself is not touched")
    run.add_argument("--limit", metavar="N", type=_limit, default=None,
                     help="with --to: how many of the first messages to send (default 1; "
                          "'all' for every one)")
    run.add_argument("--json", action="store_true",
                     help="print the outcome as one JSON object on stdout instead of the "
                          "summary line on stderr (also when the run fails after it began)")
    run.set_defaults(func=cmd_run)

    # --- check, preview, init (safe operation) ---
    _add_safe_commands(commands, common)

    # --- history, status (read the journal) ---
    _add_history_commands(commands, common)

    # --- schedule (the long-running service) ---
    _add_schedule_command(commands, common)

    return parser


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `mailbatch preview | head`


def main(argv: Sequence[str] | None = None) -> int:
    """The command line, and its boundary: a MailbatchError is one line and its exit code;
    anything else is a bug, one line with exit 70 and the path of a crash log holding the
    traceback, never a traceback on stderr."""
    standard_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.quiet = args.quiet or args.quiet_before
    args.verbose += args.verbose_before
    restore = _configure_logging(args.quiet, args.verbose, getattr(args, "debug_smtp", False))
    args.stop = threading.Event()
    stdout, sys.stdout = sys.stdout, GuardedStdout(sys.stdout)
    try:
        _current_folder()
        if args.func is not cmd_run:
            code = int(args.func(args))
        else:
            with stop_on_signals(args.stop):  # at once: a SIGTERM while starting stops cleanly
                code = int(args.func(args))
        sys.stdout.flush()  # here, where a reader gone or a full disk is still ours to report
        return code
    except MailbatchError as err:
        _error(str(err))
        for line in _after_error(err, as_json=_wants_json(args)):
            _error(line, prefix="")
        _json_after_error(args, err, err.exit_code)
        return err.exit_code
    except KeyboardInterrupt as err:
        _error("interrupted", prefix="mailbatch: ")
        _json_after_error(args, err, EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of stdout is gone (| head): nothing more to say
        quiet_broken_pipe()
        return EXIT_BROKEN_PIPE
    except Exception as err:  # a bug: no input a user can write should get here
        log_file = crash_log(err, argv)
        where = f"the traceback is in {log_file}" if log_file else "no crash log could be written"
        _error(f"internal error ({type(err).__name__}); this is a bug in mailbatch, please "
               f"report it: {where}")
        _json_after_error(args, err, EXIT_SOFTWARE)
        return EXIT_SOFTWARE
    finally:
        sys.stdout = stdout
        restore()


def _current_folder() -> None:
    """Relative paths need a current folder; one deleted under the shell has none."""
    try:
        os.getcwd()
    except OSError as err:
        raise StateError(f"the current folder cannot be used ({err.strerror}); it may have "
                         "been deleted: cd to an existing folder and run again") from None


def _error(text: str, prefix: str = "mailbatch: error: ") -> None:
    """One error on stderr, recipient data in it made printable."""
    with contextlib.suppress(OSError):  # stderr closed as well: the exit code still tells
        print(prefix + printable(text), file=sys.stderr)


def _after_error(err: MailbatchError, as_json: bool = False) -> list[str]:
    """What follows the error line of a run that began sending: a second error (its report
    could not be written either), then the batch's summary line, as every such run ends
    (with --json, the summary is the JSON object on stdout instead)."""
    lines = []
    if getattr(err, "report_error", None):
        lines.append(f"mailbatch: error: {err.report_error}")  # type: ignore[attr-defined]
    report = getattr(err, "report", None)
    if report is not None and not as_json:
        lines.append(report.summary())
    return lines


def _wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def _json_after_error(args: argparse.Namespace, err: BaseException, code: int) -> None:
    """``run --json`` that failed after its batch began: the report's JSON on stdout all the
    same, with the error and the exit code, so a wrapper learns what was sent."""
    report = getattr(err, "report", None)
    if report is None or not _wants_json(args):
        return
    from mailbatch.cli.jsonout import print_json, run_document

    report_error = getattr(err, "report_error", None)
    if report.error is None:  # every send went as it should; the report could not be written
        report_error = str(err)
    with contextlib.suppress(OSError):
        print_json(run_document(report, code, report_error))


def _configure_logging(quiet: bool, verbose: int, debug_smtp: bool = False) -> Callable[[], None]:
    """Set up the "mailbatch" logger for one command; returns a function that undoes it, so
    main() can be called repeatedly (tests, embedding) without handlers piling up."""
    root = logging.getLogger("mailbatch")
    saved = (root.handlers[:], root.level, root.propagate)
    smtp_log, security_log = logging.getLogger("mailbatch.smtp.session"), logging.getLogger(
        "mailbatch.security")
    saved_levels = (smtp_log.level, security_log.level)
    # --debug-smtp shows the conversation whatever -q/-v say; security warnings survive -q.
    smtp_log.setLevel(logging.DEBUG if debug_smtp else logging.NOTSET)
    security_log.setLevel(logging.WARNING)

    def restore() -> None:
        root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]
        smtp_log.setLevel(saved_levels[0])
        security_log.setLevel(saved_levels[1])

    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[
        min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(EscapingFormatter("%(message)s"))
    else:  # cron mails this output: timestamps say when each thing happened
        handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(message)s"))
    use_journal_format(handler, sys.stderr)  # under systemd: syslog priorities, no timestamp
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    return restore


# --- check, preview, init (safe operation) -------------------------------------------------


def _add_safe_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                       common: argparse.ArgumentParser) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    check = commands.add_parser(
        "check", parents=[common], help="validate a job and render every message; send nothing",
        description="Validate the job, render every message and read every attachment without "
                    "sending, then print a summary: recipients, attachments, total size.",
        epilog=EPILOG_CHECK, formatter_class=raw)
    check.add_argument("job", help="the job file (YAML)")
    check.add_argument("--connect", action="store_true",
                       help="also open the TLS session and log in, then quit")
    check.add_argument("--debug-smtp", action="store_true",
                       help="with --connect: log the SMTP conversation (credentials redacted)")
    check.add_argument("--json", action="store_true",
                       help="print the summary as one JSON object on stdout")
    check.set_defaults(func=cmd_check)

    preview = commands.add_parser(
        "preview", parents=[common],
        help="show a rendered message (--serve: every message, in a browser)",
        description="Render one recipient's message and show its headers, text body and "
                    "attachments, or with --serve every recipient's in a browser; nothing is "
                    "sent and no password is read.",
        epilog=EPILOG_PREVIEW, formatter_class=raw)
    preview.add_argument("job", help="the job file (YAML)")
    preview.add_argument("--recipient", "-r", metavar="ADDRESS|INDEX",
                         help="which recipient: an address, or a position counted from 1 "
                              "(default: 1)")
    preview.add_argument("--html-out", metavar="FILE",
                         help="write the HTML body to FILE, to open in a browser")
    preview.add_argument("--serve", action="store_true",
                         help="show the messages in a browser from a local server on 127.0.0.1, "
                              "reloading when the job, a template or a data file changes")
    preview.add_argument("--port", type=_port, default=0, metavar="N",
                         help="with --serve: the port (default: any free port)")
    preview.set_defaults(func=cmd_preview)

    init = commands.add_parser(
        "init", parents=[common], help="write a starter job, templates and recipients",
        description="Write a working starter job (job.yaml), its templates, a recipients CSV "
                    "and example attachments into FOLDER. It runs as a dry run or check "
                    "without any mail server.",
        epilog=EPILOG_INIT, formatter_class=raw)
    init.add_argument("folder", nargs="?", default=".", metavar="FOLDER",
                      help="where to write the files (default: the current folder)")
    init.set_defaults(func=cmd_init)


def _address(value: str) -> str:
    from mailbatch.job.addresses import AddressError, ascii_address, is_valid_address

    try:
        address = ascii_address(value.strip())
    except AddressError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not is_valid_address(address):
        raise argparse.ArgumentTypeError(f"{value!r} is not an email address (user@domain)")
    return address


def _port(value: str) -> int:
    if not value.strip().isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port (0 to 65535; 0: any free "
                                         "port)")
    return int(value)


def _limit(value: str) -> int | None:
    if value.strip().lower() == "all":
        return 0  # 0 means "no limit" until cmd_run turns it into None
    if not value.strip().isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of messages (1 or more, "
                                         "or 'all')")
    return int(value)


# --- history, status (read the journal, write nothing) ---------------------------------------


def _add_history_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                          common: argparse.ArgumentParser) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    history = commands.add_parser(
        "history", parents=[common], help="list the job's batches: when, what came of them",
        description="List every batch of the job from its journal, newest first: when it "
                    "started, when its last run ended, its recipients by state, its report. "
                    "Reads the journal only; never writes it.",
        epilog=EPILOG_HISTORY, formatter_class=raw)
    history.add_argument("job", help="the job file (YAML)")
    history.add_argument("--json", action="store_true",
                         help="print one JSON object on stdout")
    history.set_defaults(func=cmd_history)

    status = commands.add_parser(
        "status", parents=[common], help="show one batch's recipients that were not sent",
        description="Show one batch of the job (the latest, or --batch NAME): its counts, and "
                    "every recipient not sent with its state and the server's code and "
                    "reply. Reads the journal only; never writes it.",
        epilog=EPILOG_STATUS, formatter_class=raw)
    status.add_argument("job", help="the job file (YAML)")
    status.add_argument("--batch", metavar="NAME", help="that batch instead of the latest")
    status.add_argument("--json", action="store_true",
                        help="print one JSON object on stdout")
    status.set_defaults(func=cmd_status)


# --- schedule (the long-running service): command and helpers ------------------------------


def _add_schedule_command(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                          common: argparse.ArgumentParser) -> None:
    schedule = commands.add_parser(
        "schedule", parents=[common], help="run jobs on their timetables (a long-running service)",
        description="Load every job file (a folder's *.yaml and *.yml files that have a "
                    "schedule: key, or the files named), print each job's next run, then run "
                    "each job when it is due, exactly as 'mailbatch run' would, until stopped.",
        epilog=EPILOG_SCHEDULE, formatter_class=argparse.RawDescriptionHelpFormatter)
    schedule.add_argument("targets", nargs="+", metavar="FOLDER|JOB",
                          help="a folder of job files, or job files")
    schedule.add_argument("--list", action="store_true",
                          help="print the jobs and their next run times, then exit")
    schedule.add_argument("--status-file", metavar="PATH",
                          help="keep a JSON status here (service pid and heartbeat, each job's "
                               "last run, result, exit code and next run)")
    schedule.set_defaults(func=cmd_schedule)


