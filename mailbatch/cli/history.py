"""``mailbatch history`` and ``mailbatch status``: a job's batches from its journal, for people
(aligned text) and for programs (``--json``: one JSON object on stdout, shape in the README).

Nothing here writes: the journal is read through batch.history, which opens it read-only.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from mailbatch.batch.history import BatchRecord, History
from mailbatch.batch.journal import STATUSES, Entry
from mailbatch.batch.report import recipient_record, shown_path
from mailbatch.cli.boundary import printable
from mailbatch.errors import UsageError
from mailbatch.job.model import Job

__all__ = ["print_history", "print_status"]


def print_history(job: Job, out: TextIO, as_json: bool = False) -> None:
    """Every batch of the job, newest first."""
    with History(job) as history:
        records = history.batches()
    if as_json:
        out.write(json.dumps({**_head(job, history.path),
                              "batches": [r.as_json() for r in records]}, indent=2) + "\n")
        return
    if not records:
        out.write(_none_yet(job, history.path) + "\n")
        return
    rows = [("BATCH", "STARTED", "LAST RUN ENDED", "RECIPIENTS", "REPORT")]
    rows += [(r.batch, _when(r.started), _when(r.finished), _counts(r.counts),
              shown_path(r.report) if r.report else "-") for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        out.write(printable(f"{line}  {row[4]}".rstrip()) + "\n")


def print_status(job: Job, batch: str | None, out: TextIO, as_json: bool = False) -> None:
    """One batch (by default the latest): its counts, and every recipient not sent with the
    server's code and reply."""
    with History(job) as history:
        record = history.batch(batch)
        if record is None and batch is not None:
            known = ", ".join(r.batch for r in history.batches()[:5]) or "it has none yet"
            raise UsageError(f"{job.path}: the job has no batch {batch!r} ({known}); see "
                             f"'mailbatch history {job.path}'")
        entries = history.not_sent(record.batch) if record is not None else iter(())
        if as_json:
            _status_json(out, {**_head(job, history.path),
                               "batch": record.as_json() if record else None},
                         (recipient_record(entry) for entry in entries))
        elif record is None:
            out.write(_none_yet(job, history.path) + "\n")
        else:
            for line in _status_lines(job, record, entries):
                out.write(printable(line) + "\n")


def _status_lines(job: Job, record: BatchRecord, entries: Iterable[Entry]) -> Iterator[str]:
    ended = f"last run ended {_when(record.finished)}" if record.finished else \
        "no run of it has ended (one may be going)"
    report = f"; report: {shown_path(record.report)}" if record.report else ""
    yield (f"{job.name}: batch {record.batch}: started {_when(record.started)}, {ended}; "
           f"{_counts(record.counts)}{report}")
    unsent = record.total - record.counts["sent"]
    if not unsent:
        yield "every recipient was sent" if record.total else "it has no recipients"
        return
    yield f"not sent ({unsent} of {record.total}):"
    rows = [(f"{e.index + 1}", e.address, e.status, str(e.code or ""), e.message)
            for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for number, address, status, code, message in rows:
        yield (f"  {number.rjust(widths[0])}  {address.ljust(widths[1])}  "
               f"{status.ljust(widths[2])}  {code.ljust(widths[3])}  {message}").rstrip()
    if record.to_send:
        yield (f"next: 'mailbatch run --batch {record.batch} {job.path}' sends the "
               f"{record.to_send} pending or deferred")
    if record.counts["uncertain"]:
        yield ("uncertain: the server may or may not have them; see the server's log before "
               "using --resend-uncertain (it may send them twice)")


def _status_json(out: TextIO, head: dict[str, Any], rows: Iterable[dict[str, Any]]) -> None:
    """The object with its ``not_sent`` rows streamed, as the JSON report is written."""
    text = json.dumps(head, indent=2)
    out.write(text[:-2] + ',\n  "not_sent": [')
    count = 0
    for count, row in enumerate(rows, 1):
        out.write((",\n    " if count > 1 else "\n    ") + json.dumps(row))
    out.write("\n  ]\n}\n" if count else "]\n}\n")


def _head(job: Job, journal: Path) -> dict[str, Any]:
    return {"job": job.name, "job_file": str(job.path), "journal": str(journal),
            "journal_exists": journal.is_file()}


def _none_yet(job: Job, journal: Path) -> str:
    return (f"{job.name}: no batches yet: nothing has been sent (no journal at "
            f"{shown_path(journal)})")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts.get(s)) or "no recipients"


def _when(stamp: str | None) -> str:
    """A time from the journal as people read it: local, to the second, without the T."""
    if not stamp:
        return "-"
    try:
        return dt.datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp
