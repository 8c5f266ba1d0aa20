"""The command line: argument parsing, logging set-up and printing only.

Heavy modules are imported inside the command that needs them, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailbatch import __version__
from mailbatch.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_TEMPFAIL,
    MailbatchError,
)

if TYPE_CHECKING:
    from mailbatch.report import Report

__all__ = ["exit_code_for", "main"]

log = logging.getLogger("mailbatch")

EPILOG_RUN = """examples:
  mailbatch run weekly-sales.yaml               send (or resume) this week's batch
  mailbatch run --dry-run weekly-sales.yaml     write every message to the outbox instead
  mailbatch run --new-batch weekly-sales.yaml   start a fresh batch even if today's exists

exit codes: 0 all sent; 1 some refused, failed or uncertain; 3 already running;
65 a message could not be rendered (nothing sent); 69 cannot connect or TLS failed;
74 cannot write report/journal; 75 server kept failing, re-run to resume; 77 login refused;
78 invalid job file (nothing sent); 130 interrupted, re-run to resume."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailbatch",
        description="Send batches of personalised report emails from a YAML job file.",
        epilog="Run 'mailbatch COMMAND --help' for each command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"mailbatch {__version__}")
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
                     help="start a fresh batch instead of resuming the current one")
    run.add_argument("--resend-uncertain", action="store_true",
                     help="resend messages whose delivery is uncertain (may duplicate them)")
    run.add_argument("--debug-smtp", action="store_true",
                     help="log the SMTP conversation (credentials redacted)")
    run.set_defaults(func=cmd_run)

    # --- check, preview, init (safe operation) ---

    # --- schedule (the long-running service) ---

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.quiet, args.verbose)
    try:
        return int(args.func(args))
    except MailbatchError as err:
        print(f"mailbatch: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("mailbatch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def cmd_run(args: argparse.Namespace) -> int:
    from mailbatch.job import load_job
    from mailbatch.runner import RunOptions, run

    job = load_job(args.job)
    options = RunOptions(dry_run=args.dry_run, new_batch=args.new_batch,
                         resend_uncertain=args.resend_uncertain, debug_smtp=args.debug_smtp)
    with stop_on_signals(options.stop):
        report = run(job, options)
    if not args.quiet:
        print(report.summary(), file=sys.stderr)
    return exit_code_for(report)


def exit_code_for(report: Report) -> int:
    """0 all sent; 75 some still to send (re-run resumes); 1 some refused, failed, uncertain."""
    counts = report.counts
    if counts.get("pending") or counts.get("deferred"):
        return EXIT_TEMPFAIL
    if counts.get("refused") or counts.get("failed") or counts.get("uncertain"):
        return EXIT_PARTIAL
    return EXIT_OK


class stop_on_signals:
    """SIGINT and SIGTERM set ``stop`` so the message in flight finishes and the journal and
    report are written; a second signal aborts at once."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        log.warning("received %s: finishing the message in flight, then stopping",
                    signal.Signals(signum).name)
        self.stop.set()

    def __enter__(self) -> stop_on_signals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def _configure_logging(quiet: bool, verbose: int) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[
        min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:  # cron mails this output: timestamps say when each thing happened
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("mailbatch")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
