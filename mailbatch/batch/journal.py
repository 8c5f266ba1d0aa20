"""The journal: a durable SQLite record of every batch, so a re-run resumes instead of resending.

States of a recipient in a batch:

- ``pending``: registered, nothing sent yet (also after a failure that is safe to retry).
- ``uncertain``: the end of DATA was about to be sent and no final reply was recorded; the
  server may or may not have the message. Never resent unless the user asks.
- ``deferred``: transient failures outlasted the retries; the next run tries again.
- ``sent``, ``refused``, ``failed``: final, with the server's code and text.
- ``removed``: still pending when it was taken off the recipient list; listing it again in
  the same batch makes it pending again.
- ``dry-run``: written to the outbox by a dry run (only in a dry run's throwaway journal).

Each state change is its own committed transaction (WAL mode), so a killed process leaves at
most one recipient ``uncertain``; the sender makes each one only from the state it left the
recipient in (``mark(..., expect=...)``), so a second run on the same batch stops instead of
sending a message twice. One Journal is one connection, for one run: open a new one
per run (and per thread), never share one between concurrent runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailbatch.batch.journalfile import open_journal
from mailbatch.errors import StateError

__all__ = ["FINAL", "STATUSES", "TO_SEND", "BatchInfo", "Entry", "Journal"]

FINAL = frozenset({"sent", "refused", "failed", "removed", "dry-run"})
TO_SEND = ("pending", "deferred")
_BEGUN = "(d.status NOT IN ('pending', 'removed') OR d.attempts > 0)"  # a run tried it
STATUSES = ("pending", "deferred", "uncertain", "sent", "refused", "failed", "removed",
            "dry-run")



@dataclass(frozen=True)
class BatchInfo:
    """One batch of the job: its name, the name its ``batch`` key rendered to, and when it began.

    ``clock`` is the first run's clock with its UTC offset, so that a resume (even one started
    after midnight, or under another ``TZ``) renders exactly the dates the batch began with.
    """

    batch: str
    base: str
    created: str
    clock: dt.datetime
    to_send: int  # pending or deferred: what a resume sends
    uncertain: int
    begun: int = 0  # recipients a run has tried to send (or settled): 0 if it never began


@dataclass(frozen=True)
class Entry:
    """One recipient's row, as the report shows it."""

    index: int
    address: str
    status: str
    code: int | None
    message: str
    message_id: str
    attachments: list[dict[str, Any]]
    attempts: int
    updated: str
    envelope: dict[str, list[str]] = field(default_factory=dict)  # to, cc, bcc: the addresses


def _other_file(recorded: Path, job_path: Path) -> bool:
    """Whether ``recorded`` is an existing file other than ``job_path`` (a symlinked folder
    gives one file two paths)."""
    try:
        return recorded.is_file() and not os.path.samefile(recorded, job_path)
    except OSError:
        return False


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _clock(clock: str | None, created: str) -> dt.datetime:
    """A batch's clock; a journal from before clocks were kept has only its UTC start."""
    return dt.datetime.fromisoformat(clock) if clock else \
        dt.datetime.fromisoformat(created).astimezone()


class Journal:
    """One SQLite file per job; opened for the length of one run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_journal(path)

    @classmethod
    def reader(cls, path: Path) -> Journal:
        """The journal opened read-only, for a look from outside any run (the scheduler, at
        start): it creates and changes nothing, so it is safe while a run writes the file.
        Raises StateError if it does not exist or cannot be read."""
        journal = cls.__new__(cls)
        journal.path = path
        try:
            journal.db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True,
                                         isolation_level=None, check_same_thread=False,
                                         timeout=2)
        except sqlite3.Error as err:
            raise StateError(f"{path}: cannot read the journal: {err}") from None
        return journal

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """Every statement goes through here, so a full disk is a StateError, not a traceback."""
        try:
            return self.db.execute(sql, params)
        except sqlite3.OperationalError as err:
            if "locked" in str(err) or "busy" in str(err):
                raise StateError(f"{self.path}: the journal is held by another process "
                                 f"({err}): is another run of this job going? Stopping; make "
                                 "sure only one run is going, then run again to resume") \
                    from None
            raise StateError(f"{self.path}: cannot update the journal: {err}; check the disk "
                             "and the state_dir folder, then run again to resume") from None
        except sqlite3.Error as err:
            raise StateError(f"{self.path}: cannot update the journal: {err}; check the disk "
                             "and the state_dir folder, then run again to resume") from None

    # -- the job and its batches -----------------------------------------------------------

    def claim(self, job_path: Path) -> None:
        """Refuse a journal that belongs to another job file of the same name (a shared
        state_dir): its ``sent`` rows would make this job silently skip recipients. A job file
        that was moved (its old path is gone) takes the journal over."""
        row = self._execute("SELECT value FROM meta WHERE name = 'job'").fetchone()
        if row and row[0] != str(job_path) and _other_file(Path(row[0]), job_path):
            raise StateError(f"{self.path}: this journal belongs to another job file with the "
                             f"same name ({row[0]}); give each job its own state_dir or rename "
                             "one of them")
        if not row or row[0] != str(job_path):
            self._execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('job', ?)",
                          (str(job_path),))

    def latest(self, base: str) -> BatchInfo | None:
        """The newest batch whose ``batch`` key rendered to ``base``, if there is one."""
        return next(iter(self._batches("WHERE b.base = ?", (base,))), None)

    def find(self, batch: str) -> BatchInfo | None:
        """The batch of that exact name (``2026-11-30`` or ``2026-11-30#2``), if there is one."""
        return next(iter(self._batches("WHERE b.batch = ?", (batch,))), None)

    def unfinished(self) -> list[BatchInfo]:
        """Batches that still have recipients to send (pending or deferred), newest first.
        A batch left with only ``uncertain`` recipients is not one: a resume sends nothing."""
        return [info for info in self._batches("", ()) if info.to_send]

    def create(self, base: str, clock: dt.datetime, earlier: int = 0) -> str:
        """Start a new batch for ``base``: ``base`` itself, or ``base#N`` if it exists (or if
        ``earlier`` batches of it are known from elsewhere, such as a lost journal's report)."""
        count = self._execute("SELECT COUNT(*) FROM batches WHERE base = ?", (base,)).fetchone()[0]
        count = max(count, earlier)
        batch = base if not count else f"{base}#{count + 1}"
        self._execute("INSERT INTO batches (batch, base, created, clock) VALUES (?, ?, ?, ?)",
                      (batch, base, _now(), clock.isoformat()))
        return batch

    def batch(self, base: str, *, new: bool = False) -> tuple[str, bool]:
        """The batch to work on and whether it is resumed: the latest one for ``base``, or a
        new one (the first, or with ``new`` another) started now."""
        latest = None if new else self.latest(base)
        if latest is not None:
            return latest.batch, True
        return self.create(base, dt.datetime.now().astimezone()), False

    def record_run(self, batch: str, finished: str, report: Path | None,
                   report_csv: Path | None) -> None:
        """Note when a run of ``batch`` ended and the reports it wrote, for ``history``."""
        self._execute("UPDATE batches SET finished = ?, report = ?, report_csv = ? WHERE batch = ?",
                      (finished, str(report) if report else None,
                       str(report_csv) if report_csv else None, batch))

    def _batches(self, where: str, params: tuple[Any, ...]) -> list[BatchInfo]:
        rows = self._execute(
            "SELECT b.batch, b.base, b.created, b.clock,"
            " (SELECT COUNT(*) FROM deliveries d WHERE d.batch = b.batch"
            "  AND d.status IN ('pending', 'deferred')),"
            " (SELECT COUNT(*) FROM deliveries d WHERE d.batch = b.batch"
            "  AND d.status = 'uncertain'),"
            f" (SELECT COUNT(*) FROM deliveries d WHERE d.batch = b.batch AND {_BEGUN})"
            f" FROM batches b {where} ORDER BY b.created DESC, b.rowid DESC", params).fetchall()
        return [BatchInfo(batch, base, created, _clock(clock, created), to_send, uncertain,
                          begun)
                for batch, base, created, clock, to_send, uncertain, begun in rows]

    def drop_unbegun(self, batch: str) -> bool:
        """Forget ``batch`` if no run of it ever began sending (every recipient pending and
        never tried): its run stopped before the first message, at the password, the
        connection or the login. Nobody can have had its message, so a newer batch may take
        its place. False, and nothing changed, if it had begun after all: the condition is
        the delete's own, not the caller's reading of it."""
        dropped = self._execute(
            "DELETE FROM batches WHERE batch = ? AND NOT EXISTS (SELECT 1 FROM deliveries d"
            f" WHERE d.batch = ? AND {_BEGUN})", (batch, batch)).rowcount
        if dropped:
            self._execute("DELETE FROM deliveries WHERE batch = ?", (batch,))
        return bool(dropped)

    # -- recipients ------------------------------------------------------------------------

    def begin(self, immediate: bool = False) -> None:
        """Open a transaction; ``immediate`` takes the write lock at once, so what is read
        in it cannot be changed by another connection before it commits."""
        self._execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    def commit(self) -> None:
        self._execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self._execute("ROLLBACK")

    def forget_seen(self) -> None:
        """Start a new listing of the recipients (see first_seen)."""
        self._execute("DELETE FROM seen")

    def register(self, batch: str, key: str, index: int, address: str, message_id: str,
                 attachments: list[dict[str, Any]],
                 envelope: dict[str, list[str]] | None = None) -> None:
        """Add a recipient as pending, or refresh the details of one already in the batch
        (a recipient listed again after being removed is pending again). ``envelope``: the
        addresses its message goes to, by header (to, cc, bcc)."""
        self._execute(
            "INSERT INTO deliveries (batch, key, idx, address, status, message_id, attachments,"
            " updated, envelope) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?) ON CONFLICT"
            " (batch, key) DO UPDATE SET idx = excluded.idx, address = excluded.address,"
            " attachments = excluded.attachments, envelope = excluded.envelope,"
            " status = CASE WHEN status = 'removed' THEN 'pending' ELSE status END",
            (batch, key, index, address, message_id, json.dumps(attachments), _now(),
             json.dumps(envelope or {})))

    def first_seen(self, key: str, where: str) -> str | None:
        """Where ``key`` was already listed since forget_seen(), or None; duplicates must not
        be merged silently, since one of them would never get its message."""
        row = self._execute("SELECT loc FROM seen WHERE key = ?", (key,)).fetchone()
        if row:
            return str(row[0])
        self._execute("INSERT INTO seen (key, loc) VALUES (?, ?)", (key, where))
        return None

    def retire_unlisted(self, batch: str) -> int:
        """Recipients still to send that are no longer on the list become ``removed``, so the
        batch can finish; ones already sent or uncertain keep their state."""
        cursor = self._execute(
            "UPDATE deliveries SET status = 'removed', code = NULL, message = 'no longer in the "
            "recipient list; not sent', updated = ? WHERE batch = ? AND status IN "
            "('pending', 'deferred') AND key NOT IN (SELECT key FROM seen)", (_now(), batch))
        return cursor.rowcount

    def status(self, batch: str, key: str) -> str | None:
        row = self._execute("SELECT status FROM deliveries WHERE batch = ? AND key = ?",
                            (batch, key)).fetchone()
        return row[0] if row else None

    def mark(self, batch: str, key: str, status: str, code: int | None = None,
             message: str = "", attempts: int = 0, *,
             expect: tuple[str, ...] | None = None) -> None:
        """Record a state change, committed at once (autocommit outside begin());
        ``attempts`` is how many SMTP transactions this change accounts for.

        With ``expect``, the change is made only from one of those states, and a row in any
        other state stops the run (StateError): something else (another run, a person) is
        changing this batch, and going on could send a message twice.
        """
        if expect is None:
            self._execute(
                "UPDATE deliveries SET status = ?, code = ?, message = ?, updated = ?,"
                " attempts = attempts + ? WHERE batch = ? AND key = ?",
                (status, code, message, _now(), attempts, batch, key))
            return
        marks = ", ".join("?" * len(expect))
        cursor = self._execute(
            "UPDATE deliveries SET status = ?, code = ?, message = ?, updated = ?,"
            f" attempts = attempts + ? WHERE batch = ? AND key = ? AND status IN ({marks})",
            (status, code, message, _now(), attempts, batch, key, *expect))
        if cursor.rowcount != 1:
            found = self.status(batch, key)
            raise StateError(
                f"{self.path}: batch {batch}: {key} is {found or 'not in the journal'}, not "
                f"{' or '.join(expect)} as this run left it: another run (or a person) is "
                "changing this batch at the same time; stopping so that nobody gets a message "
                "twice. Make sure only one run of the job is going, then run again to resume")

    def reset_uncertain(self, batch: str) -> int:
        """Make uncertain recipients pending again, for --resend-uncertain."""
        cursor = self._execute(
            "UPDATE deliveries SET status = 'pending', code = NULL, message = 'resent after "
            "uncertain' WHERE batch = ? AND status = 'uncertain'", (batch,))
        return cursor.rowcount

    # -- reading ---------------------------------------------------------------------------

    def counts(self, batch: str) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for status, count in self._execute(
                "SELECT status, COUNT(*) FROM deliveries WHERE batch = ? GROUP BY status",
                (batch,)):
            counts[status] = count
        return counts

    def entries(self, batch: str) -> Iterator[Entry]:
        """Every recipient of the batch in list order, streamed (flat memory)."""
        cursor = self._execute(
            "SELECT idx, address, status, code, message, message_id, attachments, attempts,"
            " updated, envelope FROM deliveries WHERE batch = ? ORDER BY idx, key", (batch,))
        for row in cursor:
            yield Entry(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]),
                        row[7], row[8], json.loads(row[9]))
