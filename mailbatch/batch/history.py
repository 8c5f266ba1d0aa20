"""A job's past batches, read from its journal without writing to it: ``history`` and ``status``.

The journal is opened read-only (``Journal.reader``), so reading is safe while a run of the
job sends, and a job that never ran gets no journal (nor a state folder) from being looked at.
Journals written before runs recorded their end and report still read: those are unknown.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailbatch.batch.journal import STATUSES, TO_SEND, Entry, Journal
from mailbatch.batch.journalfile import not_a_journal
from mailbatch.errors import StateError
from mailbatch.job.model import Job

__all__ = ["BatchRecord", "History", "journal_path"]


@dataclass(frozen=True)
class BatchRecord:
    """One batch as ``history`` lists it."""

    batch: str
    started: str  # when it was begun: local time with UTC offset, to the second
    finished: str | None  # when its last run ended; None: none ended (yet), or not recorded
    counts: dict[str, int]  # every state of STATUSES, 0 included
    report: str | None  # the JSON report of its last run (None: not written, or not recorded)
    report_csv: str | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def to_send(self) -> int:
        """Recipients a run of this batch would still send (pending or deferred)."""
        return sum(self.counts[status] for status in TO_SEND)

    def as_json(self) -> dict[str, Any]:
        return {"batch": self.batch, "started": self.started, "finished": self.finished,
                "counts": self.counts, "total": self.total, "report": self.report,
                "report_csv": self.report_csv}


def journal_path(job: Job) -> Path:
    """Where a run keeps the job's journal."""
    assert job.state_dir is not None
    return job.state_dir / f"{job.name}.sqlite"


class History:
    """The job's journal, opened read-only; ``journal`` is None if the job has none yet."""

    def __init__(self, job: Job) -> None:
        self.path = journal_path(job)
        self.journal: Journal | None = None
        if self.path.is_file():  # never made here: Journal.reader does not create one
            self.journal = Journal.reader(self.path)
            try:
                self._check()
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batches(self) -> list[BatchRecord]:
        """Every batch of the job, newest first (dry runs and test sends keep none)."""
        if self.journal is None:
            return []
        counts: dict[str, dict[str, int]] = {}
        for batch, status, count in self._read(
                "SELECT batch, status, COUNT(*) FROM deliveries GROUP BY batch, status"):
            counts.setdefault(batch, dict.fromkeys(STATUSES, 0))[status] = count
        columns = ", ".join(c if c in self._columns else f"NULL AS {c}"
                            for c in ("finished", "report", "report_csv"))
        rows = self._read(f"SELECT batch, created, {columns} FROM batches "
                          "ORDER BY created DESC, rowid DESC")
        return [BatchRecord(batch, _local(created), finished,
                            counts.get(batch, dict.fromkeys(STATUSES, 0)), report, report_csv)
                for batch, created, finished, report, report_csv in rows]

    def batch(self, name: str | None = None) -> BatchRecord | None:
        """The batch of that name, or with None the latest one; None if there is no such."""
        found = self.batches()
        if name is None:
            return found[0] if found else None
        return next((record for record in found if record.batch == name), None)

    def not_sent(self, batch: str) -> Iterator[Entry]:
        """The batch's recipients in any state but ``sent``, in list order (streamed)."""
        if self.journal is None:
            return
        for row in self._read(
                "SELECT idx, address, status, code, message, message_id, attachments, attempts,"
                " updated, envelope FROM deliveries WHERE batch = ? AND status != 'sent'"
                " ORDER BY idx, key", (batch,)):
            yield Entry(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]),
                        row[7], row[8], json.loads(row[9]))

    # -- reading ---------------------------------------------------------------------------

    def _check(self) -> None:
        """StateError unless the file holds a mailbatch journal (of this version or older)."""
        if self.path.stat().st_size == 0:
            raise StateError(not_a_journal(self.path, "it is empty (0 bytes)"))
        tables = {row[0] for row in self._read(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"batches", "deliveries"} <= tables:
            raise StateError(not_a_journal(self.path, "it holds no mailbatch tables"))
        self._columns = {row[1] for row in self._read("PRAGMA table_info(batches)")}
        envelope = {row[1] for row in self._read("PRAGMA table_info(deliveries)")}
        self._envelope = "envelope" in envelope

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        assert self.journal is not None
        if not getattr(self, "_envelope", True):  # a journal from before envelopes were kept
            sql = sql.replace(" envelope FROM", " '{}' FROM")
        try:
            yield from self.journal.db.execute(sql, params)
        except sqlite3.DatabaseError as err:
            if "not a database" in str(err):
                raise StateError(not_a_journal(self.path, f"it is not a database ({err})")) \
                    from None
            raise StateError(f"{self.path}: cannot read the journal: {err}") from None


def _local(stamp: str) -> str:
    """A UTC time from the journal as local time with its offset, to the second."""
    try:
        return dt.datetime.fromisoformat(stamp).astimezone().isoformat(timespec="seconds")
    except ValueError:
        return stamp
