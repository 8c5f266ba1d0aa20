"""The journal: a durable SQLite record of every batch, so a re-run resumes instead of resending.

States of a recipient in a batch:

- ``pending``: registered, nothing sent yet (also after a failure that is safe to retry).
- ``uncertain``: the end of DATA was about to be sent and no final reply was recorded; the
  server may or may not have the message. Never resent unless the user asks.
- ``deferred``: transient failures outlasted the retries; the next run tries again.
- ``sent``, ``refused``, ``failed``: final, with the server's code and text.
- ``dry-run``: written to the outbox by a dry run (only in a dry run's throwaway journal).

Each state change is its own committed transaction (WAL mode), so a killed process leaves at
most one recipient ``uncertain``.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mailbatch.errors import StateError

__all__ = ["FINAL", "Entry", "Journal"]

FINAL = frozenset({"sent", "refused", "failed", "dry-run"})
STATUSES = ("pending", "deferred", "uncertain", "sent", "refused", "failed", "dry-run")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch TEXT PRIMARY KEY,
    base TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    batch TEXT NOT NULL,
    key TEXT NOT NULL,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    status TEXT NOT NULL,
    code INTEGER,
    message TEXT NOT NULL DEFAULT '',
    message_id TEXT NOT NULL DEFAULT '',
    attachments TEXT NOT NULL DEFAULT '[]',
    attempts INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL,
    PRIMARY KEY (batch, key)
);
"""


@dataclass(frozen=True)
class Entry:
    """One recipient's row, as the report shows it."""

    index: int
    address: str
    status: str
    code: int | None
    message: str
    message_id: str
    attachments: list[dict]
    attempts: int
    updated: str


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class Journal:
    """One SQLite file per job; opened for the length of one run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # WAL + NORMAL: a committed state survives the process being killed; only a power
            # loss can lose the last few commits (see README, "Guarantees").
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as err:
            raise StateError(f"{path}: cannot open the journal: {err}; check the state_dir "
                             "folder is writable") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- batches ---------------------------------------------------------------------------

    def batch(self, base: str, *, new: bool = False) -> tuple[str, bool]:
        """The batch to work on and whether it is resumed: the latest one for ``base``."""
        rows = self.db.execute(
            "SELECT batch FROM batches WHERE base = ? ORDER BY created DESC, rowid DESC",
            (base,)).fetchall()
        if rows and not new:
            return rows[0][0], True
        batch = base if not rows else f"{base}#{len(rows) + 1}"
        self.db.execute("INSERT INTO batches (batch, base, created) VALUES (?, ?, ?)",
                        (batch, base, _now()))
        return batch, False

    # -- recipients ------------------------------------------------------------------------

    def begin(self) -> None:
        self.db.execute("BEGIN")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def register(self, batch: str, key: str, index: int, address: str, message_id: str,
                 attachments: list[dict]) -> None:
        """Add a recipient as pending, or refresh the details of one already in the batch."""
        self.db.execute(
            "INSERT INTO deliveries (batch, key, idx, address, status, message_id, attachments,"
            " updated) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT (batch, key) DO "
            "UPDATE SET idx = excluded.idx, address = excluded.address,"
            " attachments = excluded.attachments",
            (batch, key, index, address, message_id, json.dumps(attachments), _now()))

    def first_seen(self, key: str, where: str) -> str | None:
        """Where ``key`` was already listed in this run, or None; duplicates must not be merged
        silently, since one of them would never get its message."""
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, loc TEXT)")
        row = self.db.execute("SELECT loc FROM seen WHERE key = ?", (key,)).fetchone()
        if row:
            return row[0]
        self.db.execute("INSERT INTO seen (key, loc) VALUES (?, ?)", (key, where))
        return None

    def status(self, batch: str, key: str) -> str | None:
        row = self.db.execute("SELECT status FROM deliveries WHERE batch = ? AND key = ?",
                              (batch, key)).fetchone()
        return row[0] if row else None

    def mark(self, batch: str, key: str, status: str, code: int | None = None,
             message: str = "", attempt: bool = False) -> None:
        """Record a state change, committed at once (autocommit outside begin())."""
        self.db.execute(
            "UPDATE deliveries SET status = ?, code = ?, message = ?, updated = ?,"
            " attempts = attempts + ? WHERE batch = ? AND key = ?",
            (status, code, message, _now(), int(attempt), batch, key))

    def reset_uncertain(self, batch: str) -> int:
        """Make uncertain recipients pending again, for --resend-uncertain."""
        cursor = self.db.execute(
            "UPDATE deliveries SET status = 'pending', message = 'resent after uncertain' "
            "WHERE batch = ? AND status = 'uncertain'", (batch,))
        return cursor.rowcount

    # -- reading ---------------------------------------------------------------------------

    def counts(self, batch: str) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for status, count in self.db.execute(
                "SELECT status, COUNT(*) FROM deliveries WHERE batch = ? GROUP BY status",
                (batch,)):
            counts[status] = count
        return counts

    def entries(self, batch: str) -> Iterator[Entry]:
        """Every recipient of the batch in list order, streamed (flat memory)."""
        cursor = self.db.execute(
            "SELECT idx, address, status, code, message, message_id, attachments, attempts,"
            " updated FROM deliveries WHERE batch = ? ORDER BY idx, key", (batch,))
        for row in cursor:
            yield Entry(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]),
                        row[7], row[8])
