"""The help texts of the command line: each command's examples and exit codes.

Kept apart from the argument parsing so that main.py reads as the commands it wires up.
"""

from __future__ import annotations

__all__ = ["EPILOG_CHECK", "EPILOG_HISTORY", "EPILOG_INIT", "EPILOG_MAIN", "EPILOG_PREVIEW",
           "EPILOG_RUN", "EPILOG_SCHEDULE", "EPILOG_STATUS"]

EPILOG_MAIN = """examples:
  mailbatch init reports                        write a starter job into ./reports
  mailbatch check reports/job.yaml              render every message, send nothing
  mailbatch preview reports/job.yaml --recipient 2
                                                show the second recipient's message
  mailbatch run --to me@example.com reports/job.yaml
                                                send one test message to me
  mailbatch run reports/job.yaml                send the batch
  mailbatch history reports/job.yaml            the batches sent so far
  mailbatch status reports/job.yaml             who was not sent in the latest batch, and why
  mailbatch schedule /srv/reports/jobs/         run every job there on its timetable

Run 'mailbatch COMMAND --help' for each command's options and examples."""

EPILOG_RUN = """examples:
  mailbatch run weekly-sales.yaml               send (or resume) this week's batch
  mailbatch run --dry-run weekly-sales.yaml     write every message to the outbox instead
  mailbatch run --new-batch weekly-sales.yaml   start a fresh batch even if today's exists
  mailbatch run --batch 2026-11-30 weekly-sales.yaml
                                                finish that day's unfinished batch
  mailbatch run --to me@example.com weekly-sales.yaml
                                                send the first message to me only, as a test
  mailbatch run --to me@example.com --limit 5 weekly-sales.yaml
                                                the first 5 messages, all to me
  mailbatch run --json weekly-sales.yaml        the outcome as JSON on stdout, for a program

exit codes: 0 all sent; 1 some refused, failed or uncertain; 3 already running;
4 an older batch is unfinished (finish it with --batch, or use --new-batch);
5 stopped after smtp.max_failures refused/failed/uncertain messages, re-run to resume;
65 a message could not be rendered (nothing sent); 69 cannot connect or TLS failed;
74 cannot write report/journal, or the journal is damaged or lost; 75 server kept failing,
re-run to resume; 77 login refused;
78 invalid job file, or no password to be had (nothing sent); 130 interrupted, re-run to
resume."""

EPILOG_CHECK = """examples:
  mailbatch check weekly-sales.yaml             validate, render every message, read every file
  mailbatch check --connect weekly-sales.yaml   ... and log in to the server, then quit
  mailbatch check -v weekly-sales.yaml          ... and list each recipient's size and files

Nothing is sent and no journal, report or outbox is written. Exit codes: 0 ready to send;
65 a message could not be rendered; 69 cannot connect or TLS failed; 77 login refused;
78 invalid job file (or, with --connect, no password to be had)."""

EPILOG_PREVIEW = """examples:
  mailbatch preview weekly-sales.yaml                        the first recipient's message
  mailbatch preview weekly-sales.yaml --recipient 3          the third recipient's
  mailbatch preview weekly-sales.yaml --recipient ana@example.com
  mailbatch preview weekly-sales.yaml --html-out /tmp/m.html open the HTML body in a browser
  mailbatch preview weekly-sales.yaml --serve                every message in a browser, live

--html-out FILE puts the inline images into a folder beside FILE (/tmp/m_files/ here).
Exit codes: 0 shown; 2 no such recipient, or --html-out for a job without HTML; 65 the
message could not be rendered; 78 invalid job file."""

EPILOG_INIT = """examples:
  mailbatch init                 write the starter job into the current folder
  mailbatch init monthly-report  ... into ./monthly-report (created if needed)

Existing files are never overwritten: if any starter file is there already, nothing is
written (exit 2). Then try: mailbatch check FOLDER/job.yaml"""

EPILOG_SCHEDULE = """examples:
  mailbatch schedule /srv/reports/jobs/          run every scheduled job in the folder
  mailbatch schedule --list /srv/reports/jobs/   print each job's next run time and exit
  mailbatch schedule --status-file /run/mailbatch/status.json jobs/

A job file is scheduled by its schedule: key, e.g. 'every monday at 08:00 Europe/Paris'.
Job files are re-read when they change (checked every 10 seconds, or at once on SIGHUP);
an invalid one is reported and its previous version stays scheduled. At start and after a
reload, batches left unfinished (a stop, a crash) are finished at once. SIGTERM or Ctrl-C:
no new runs start, running batches finish the message in flight, then it exits 0.

exit codes: 0 stopped by SIGTERM/SIGINT (or --list with every job valid); 2 a FOLDER|JOB
does not exist; 74 cannot write the status file; 78 --list found an invalid job file."""

EPILOG_HISTORY = """examples:
  mailbatch history weekly-sales.yaml           every batch, newest first
  mailbatch history --json weekly-sales.yaml    the same as one JSON object on stdout

Reads the job's journal only (never writes it; safe while a run sends). A job that has no
journal yet has no batches: that is said, with exit 0. Exit codes: 0 listed; 74 the journal
cannot be read or is not a journal; 78 invalid job file."""

EPILOG_STATUS = """examples:
  mailbatch status weekly-sales.yaml            the latest batch: who was not sent, and why
  mailbatch status --batch 2026-11-30 weekly-sales.yaml
                                                that batch
  mailbatch status --json weekly-sales.yaml     the same as one JSON object on stdout

Reads the job's journal only (never writes it; safe while a run sends). Exit codes: 0 shown
(also when the job has no batch yet: that is said); 2 no batch of that name; 74 the journal
cannot be read or is not a journal; 78 invalid job file."""
