"""What each command does: load the job, hand it to the layer below, print what came of it.

The arguments are parsed in main.py, which also turns every error into one line; heavy
modules are imported inside the command that needs them, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mailbatch.batch.signals import reload_on_sighup, stop_on_signals
from mailbatch.cli.boundary import printable
from mailbatch.errors import EXIT_OK, MailbatchError, UsageError

if TYPE_CHECKING:
    from mailbatch.service.scheduler import Service

__all__ = ["cmd_check", "cmd_history", "cmd_init", "cmd_preview", "cmd_run", "cmd_schedule",
           "cmd_status", "schedule_lines"]

log = logging.getLogger("mailbatch")


def cmd_run(args: argparse.Namespace) -> int:
    from mailbatch.batch.report import exit_code_for
    from mailbatch.batch.runner import RunOptions, run
    from mailbatch.cli.progress import choose as choose_progress
    from mailbatch.job.model import load_job
    from mailbatch.service.notify import send_summary

    _check_test_send_options(args)
    job = load_job(args.job)
    progress = choose_progress(sys.stderr, quiet=args.quiet, verbose=args.verbose,
                               debug=args.debug_smtp, logger=log)
    options = RunOptions(dry_run=args.dry_run, new_batch=args.new_batch, batch=args.batch,
                         resend_uncertain=args.resend_uncertain, debug_smtp=args.debug_smtp,
                         stop=args.stop, progress=progress, test_to=args.to,
                         test_limit=1 if args.limit is None else (args.limit or None))
    failure: MailbatchError | None = None
    real = not (args.dry_run or args.to)  # a dry run or a test send never notifies anyone
    try:
        report = run(job, options)
    except MailbatchError as err:
        failure = err
        raise
    finally:
        if progress is not None:
            progress.close()
        if failure is not None and real:  # the job's notify: address hears of it too
            send_summary(job, getattr(failure, "report", None), failure)
    code = exit_code_for(report)
    if args.json:  # the summary for a program, on stdout; errors stay on stderr
        from mailbatch.cli.jsonout import print_json, run_document

        print_json(run_document(report, code))
    elif not args.quiet or code != EXIT_OK:  # -q: silent on success: cron mails problems only
        print(printable(report.summary()), file=sys.stderr)
    if real:
        send_summary(job, report)
    return code


def cmd_check(args: argparse.Namespace) -> int:
    from mailbatch.cli.check import check
    from mailbatch.job.model import load_job

    if args.debug_smtp and not args.connect:
        raise UsageError("--debug-smtp needs --connect: without it, check does not talk to "
                         "the server")
    job = load_job(args.job)
    summary = check(job, connect=args.connect, debug_smtp=args.debug_smtp)
    for warning in summary.warnings:
        print(f"mailbatch: warning: {printable(warning)}", file=sys.stderr)
    if args.json:
        from mailbatch.cli.jsonout import print_json

        print_json(summary.document(job.path))
    elif not args.quiet:
        print(printable("\n".join(summary.lines(job.path))))
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from mailbatch.cli.history import print_history
    from mailbatch.job.model import load_job

    print_history(load_job(args.job), sys.stdout, as_json=args.json)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from mailbatch.cli.history import print_status
    from mailbatch.job.model import load_job

    print_status(load_job(args.job), args.batch, sys.stdout, as_json=args.json)
    return EXIT_OK


def cmd_preview(args: argparse.Namespace) -> int:
    from mailbatch.cli.preview import preview, write_html
    from mailbatch.job.model import load_job

    if args.serve:
        return _serve_preview(args)
    job = load_job(args.job)
    shown = preview(job, args.recipient)
    if args.html_out:
        if shown.html is None:
            raise UsageError(f"{job.path}: this job has no HTML body (add html or "
                             "html_template); nothing written")
        write_html(shown, Path(args.html_out))  # and its inline images beside it
    print("\n".join(shown.lines(args.html_out)))
    return EXIT_OK


def _serve_preview(args: argparse.Namespace) -> int:
    from mailbatch.cli.serve import PreviewServer

    if args.html_out:
        raise UsageError("--serve shows the HTML in the browser; drop --html-out")
    if not Path(args.job).is_file():
        raise UsageError(f"{args.job}: no such job file")
    try:
        server = PreviewServer(args.job, args.port)
    except OSError as err:
        raise UsageError(f"cannot listen on 127.0.0.1:{args.port}: {err.strerror}; choose "
                         "another --port") from None
    with server:
        print(f"previewing {server.job_path} at {server.url}?r={args.recipient or 1} "
              "(nothing is sent; Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it ends
            server.serve_forever()
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from mailbatch.cli.starter import JOB_FILE, init

    written = init(args.folder)
    if not args.quiet:
        job = Path(args.folder) / JOB_FILE
        print(f"wrote {len(written)} files into {args.folder}:")
        print("\n".join(f"  {path}" for path in written))
        print(f"next: mailbatch check {job}\n      mailbatch preview {job}\n"
              f"      mailbatch run --dry-run {job}\n"
              f"then set smtp: in {job} and send yourself a test: "
              f"mailbatch run --to YOU@EXAMPLE.COM {job}")
    return EXIT_OK


def _check_test_send_options(args: argparse.Namespace) -> None:
    if args.batch is not None:
        for flag, given in (("--dry-run", args.dry_run), ("--new-batch", args.new_batch)):
            if given:
                raise UsageError(f"--batch continues a batch of the journal; it does not go "
                                 f"with {flag}")
    if args.to is None:
        if args.limit is not None:
            raise UsageError("--limit applies to a test send only; add --to ADDRESS")
        return
    for flag, given in (("--dry-run", args.dry_run), ("--new-batch", args.new_batch),
                        ("--batch", args.batch is not None),
                        ("--resend-uncertain", args.resend_uncertain)):
        if given:
            raise UsageError(f"--to makes a test send, which never touches the batch: drop "
                             f"{flag}")


def cmd_schedule(args: argparse.Namespace) -> int:
    from mailbatch.errors import EXIT_CONFIG
    from mailbatch.service.scheduler import Service

    # Each run's one-line outcome and each reload are INFO: shown unless -q. With --list, the
    # list itself says which job files are invalid.
    loggers = [logging.getLogger(n) for n in (
        "mailbatch.service.scheduler", "mailbatch.service.runs", "mailbatch.service.notify")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL if args.list else logging.ERROR if args.quiet else
                    min(logging.INFO, lg.getEffectiveLevel()))
    try:
        service = Service(args.targets, status_file=None if args.list else args.status_file)
        service.load()
        if args.list or not args.quiet:
            print("\n".join(schedule_lines(service)), flush=True)
        if args.list:
            return EXIT_CONFIG if any(e.error for e in service.entries.values()) else EXIT_OK
        with stop_on_signals(service.stop), reload_on_sighup(service.request_reload):
            service.serve()
        return EXIT_OK
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.setLevel(level)


def schedule_lines(service: Service) -> list[str]:
    """One line per job: name, next run (and in the job's zone), timetable, file; invalid
    files say why."""
    from zoneinfo import ZoneInfo

    entries = service.sorted_entries()
    if not entries:
        return [f"no scheduled jobs in {', '.join(str(t) for t in service.targets)} (a job "
                "is scheduled by its schedule: key)"]
    width = max(len(e.name) for e in entries)
    lines = []
    for e in entries:
        when = e.next_run.astimezone().strftime("%a %Y-%m-%d %H:%M:%S %z") if e.next_run \
            else "not scheduled"
        if e.next_run and e.timetable and e.timetable.zone:  # and in the job's own zone
            zoned = e.next_run.astimezone(ZoneInfo(e.timetable.zone))
            when += f" ({zoned:%a %H:%M:%S %Z} {e.timetable.zone})"
        what = e.timetable.text if e.timetable else "-"
        lines.append(f"{e.name:<{width}}  {when}  {what}  ({e.path})")
        if e.error:
            lines.append(f"{'':<{width}}  INVALID: {e.error}")
    return lines
