"""The delivery report: one JSON and one CSV file per batch, each written whole or not at all.

Rows are streamed from the journal into a temporary file that is then renamed over the
report, so a reader never sees half a report and memory stays flat for any batch size.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from mailbatch.batch.journal import Entry
from mailbatch.errors import EXIT_OK, EXIT_PARTIAL, EXIT_TEMPFAIL, StateError

__all__ = ["CSV_COLUMNS", "Report", "atomic_file", "cannot_create_in", "check_writable",
           "exit_code_for", "recipient_record", "sent_in_report", "shown_path",
           "write_report"]

_UMASK = os.umask(0o022)  # read once, at import (before any thread): os.umask only sets it
os.umask(_UMASK)
CSV_COLUMNS = ("number", "address", "status", "code", "message", "message_id", "attachments",
               "attempts", "time", "to", "cc", "bcc")


@dataclass
class Report:
    """What a run did; the CLI prints its summary line, the scheduler keeps it as status."""

    job: str
    job_file: str
    batch: str
    resumed: bool
    dry_run: bool
    started: str
    finished: str
    server: dict[str, Any]
    counts: dict[str, int]
    json_path: Path | None = None
    csv_path: Path | None = None
    error: str | None = None
    test_send: bool = False
    outbox: str | None = None  # a dry run: the folder its .eml files were written to

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def exit_code(self) -> int:
        """What ``mailbatch run`` exits with for this outcome (see exit_code_for)."""
        return exit_code_for(self)

    def summary(self) -> str:
        """One line for stderr and for cron mail."""
        counts = dict(self.counts)
        written = counts.pop("dry-run", 0)
        shown = [f"{n} {s}" for s, n in counts.items() if n]
        if self.dry_run:  # what a person looks for next: the messages
            shown.insert(0, f"{written} message{'' if written == 1 else 's'} written to "
                         f"{shown_path(self.outbox)}{os.sep}" if self.outbox else f"{written} "
                         "written")
        what = "dry run" if self.dry_run else ("test send" if self.test_send else "batch")
        resumed = " (resumed)" if self.resumed else ""
        where = f"; report: {shown_path(self.json_path)}" if self.json_path else ""
        return (f"{self.job}: {what} {self.batch}{resumed}: "
                f"{', '.join(shown) or 'no recipients'}{where}")

    def metadata(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("json_path", "csv_path"):
            data.pop(name)
        data["total"] = self.total
        return data


def shown_path(path: str | Path) -> str:
    """A path as a person would type it: relative to the current folder if it is below it."""
    text = str(path)
    try:
        relative = os.path.relpath(text)
    except ValueError:  # another drive (Windows)
        return text
    return text if relative.startswith("..") else relative


def exit_code_for(report: Report) -> int:
    """0 all sent; 75 some still to send (a re-run resumes); 1 some refused, failed, uncertain.

    One mapping for ``mailbatch run`` and the scheduler, so cron and the status file agree."""
    counts = report.counts
    if counts.get("pending") or counts.get("deferred"):
        return EXIT_TEMPFAIL
    if counts.get("refused") or counts.get("failed") or counts.get("uncertain"):
        return EXIT_PARTIAL
    return EXIT_OK


def write_report(report: Report, entries: Callable[[], Iterable[Entry]]) -> None:
    """Write ``report.json_path`` and ``report.csv_path`` atomically.

    ``entries()`` streams the journal's rows, read once for both files, so the report of a
    100,000-recipient batch never sits in memory.
    """
    with ExitStack() as files:
        json_file = files.enter_context(atomic_file(report.json_path, durable=False)) \
            if report.json_path else None
        csv_file = files.enter_context(atomic_file(report.csv_path, newline="",
                                                   durable=False)) \
            if report.csv_path else None
        writer = csv.writer(csv_file) if csv_file is not None else None
        if json_file is not None:
            head = json.dumps(report.metadata(), indent=2, ensure_ascii=False)
            json_file.write(head[:-2] + ',\n  "recipients": [')  # reopen it to stream the rows
        if writer is not None:
            writer.writerow(CSV_COLUMNS)
        for i, entry in enumerate(entries() if json_file or writer else ()):
            if json_file is not None:
                json_file.write(",\n    " if i else "\n    ")
                json_file.write(json.dumps(recipient_record(entry), ensure_ascii=False))
            if writer is not None:
                writer.writerow(_row(entry))
        if json_file is not None:
            json_file.write("\n  ]\n}\n")


def check_writable(report: Report) -> None:
    """StateError unless the report can be written where it goes (a file is created and
    removed in its folder, or in the nearest folder that exists: no folder is made yet).
    Found before sending, not after the whole batch went out."""
    for path in dict.fromkeys(p for p in (report.json_path, report.csv_path) if p):
        if path.is_dir():  # the rename over it would fail once the whole batch went out
            raise StateError(f"{path}: cannot write the report: a folder of that name is in "
                             "the way; move it, or change report in the job file; nothing "
                             "was sent")
        problem = cannot_create_in(path.parent)
        if problem is not None:
            folder, why = problem
            raise StateError(f"{path}: cannot write the report: {why} ({folder}); check the "
                             "report folder is writable; nothing was sent")


def cannot_create_in(folder: Path) -> tuple[Path, str] | None:
    """(the folder tried, why) if no file can be made in ``folder``, or, while it does not
    exist yet, in the nearest folder above it that does; None if one can. A file is created
    there and removed at once: nothing is left, and no folder is made."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".mailbatch-", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        return probe, err.strerror or str(err)
    return None


_HEAD_END = ',\n  "recipients": ['


def sent_in_report(path: Path) -> int:
    """How many recipients a batch's JSON report lists as sent (0 if there is no such report,
    or it is a dry run's or a test send's). Only the head is read: it holds the counts."""
    try:
        with open(path, encoding="utf-8") as file:
            head = file.read(256 * 1024)
        end = head.find(_HEAD_END)
        data = json.loads(head[:end] + "\n}" if end >= 0 else head)
        counts = data.get("counts") or {}
        if data.get("dry_run") or data.get("test_send"):
            return 0
        return int(counts.get("sent") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def recipient_record(entry: Entry) -> dict[str, Any]:
    """One recipient as the JSON report (and ``status --json``) shows it."""
    return {"number": entry.index + 1, "address": entry.address, "status": entry.status,
            "code": entry.code, "message": entry.message, "message_id": entry.message_id,
            "attachments": entry.attachments, "attempts": entry.attempts, "time": entry.updated,
            **_envelope(entry)}


def _envelope(entry: Entry) -> dict[str, list[str]]:
    """Every address the message went to, by header: a recipient field holding two
    addresses shows here, not only in the message."""
    return {name: entry.envelope.get(name, []) for name in ("to", "cc", "bcc")}


def _row(entry: Entry) -> list[Any]:
    attachments = "; ".join(f"{a['name']} ({a['size']} bytes)" for a in entry.attachments)
    return [entry.index + 1, entry.address, entry.status, entry.code if entry.code else "",
            entry.message, entry.message_id, attachments, entry.attempts, entry.updated,
            *(", ".join(addresses) for addresses in _envelope(entry).values())]


@contextmanager
def atomic_file(path: Path, newline: str | None = None,
                durable: bool = True) -> Iterator[IO[str]]:
    """A temporary file beside ``path``, renamed over it only if all went well, so a reader
    (a person, a monitor) never sees half a file; ``durable`` fsyncs it first, so that not
    even a power loss can leave an empty file. A report does without: like the journal's
    last commits, what a power loss takes the next run writes again, and on a disk busy
    with a mail server's own fsyncs each one costs a run 15 ms or more."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise StateError(f"{path}: cannot write: {err.strerror}; check the folder is "
                         "writable") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as file:
            yield file
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # as open() would have made it: UMask=0077 keeps it private
        os.replace(tmp, path)
    except BaseException as err:
        with suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, BrokenPipeError | StateError):
            # A full disk, or a folder where the file goes: the caller's StateError (74).
            raise StateError(f"{path}: cannot write: {err.strerror or err}; check the "
                             "folder is writable and has space") from None
        raise
