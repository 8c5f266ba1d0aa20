"""The journal's file: made whole before it is used, and refused when it is not a journal.

A journal that is there but empty, another SQLite file or no database at all was truncated,
replaced or damaged: taking it for a new one would send every recipient of the job again.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from mailbatch.errors import StateError

__all__ = ["not_a_journal", "open_journal"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch TEXT PRIMARY KEY,
    base TEXT NOT NULL,
    created TEXT NOT NULL,
    clock TEXT,  -- the first run's clock with its UTC offset: what a resume renders with
    finished TEXT,  -- when its last run ended (local time, UTC offset), for history
    report TEXT,  -- the JSON and CSV reports that run wrote (NULL: none written)
    report_csv TEXT
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
    envelope TEXT NOT NULL DEFAULT '{}',  -- to, cc and bcc as sent, for the report
    PRIMARY KEY (batch, key)
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def open_journal(path: Path) -> sqlite3.Connection:
    """A connection to the journal at ``path`` (made if there is none), ready for use."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        if not existed:
            _create(path)
        if existed and path.stat().st_size == 0:
            raise StateError(not_a_journal(path, "it is empty (0 bytes)"))
        # timeout: a reader elsewhere (the scheduler's status) may hold the file briefly.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    except StateError:
        raise
    except OSError as err:
        raise StateError(f"{path}: cannot open the journal: {err.strerror or err}; check "
                         "the state_dir folder is writable") from None
    except sqlite3.Error as err:
        raise StateError(f"{path}: cannot open the journal: {err}; check the state_dir "
                         "folder is writable") from None
    try:
        tables = {row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if existed and not {"batches", "deliveries", "meta"} <= tables:
            raise StateError(not_a_journal(path, "it holds no mailbatch tables"))
        # WAL + NORMAL: a committed state survives the process being killed; only a power
        # loss can lose the last few commits (see README, "Guarantees").
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(batches)")}
        # Columns added since the first journals (older mailbatch ignores them):
        for column in ("clock", "finished", "report", "report_csv"):
            if column not in columns:
                db.execute(f"ALTER TABLE batches ADD COLUMN {column} TEXT")
        columns = {row[1] for row in db.execute("PRAGMA table_info(deliveries)")}
        if "envelope" not in columns:  # a journal written before the column existed
            db.execute("ALTER TABLE deliveries ADD COLUMN envelope TEXT NOT NULL DEFAULT '{}'")
        db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, loc TEXT)")
    except sqlite3.DatabaseError as err:
        db.close()
        if existed and "not a database" in str(err):
            raise StateError(not_a_journal(path, f"it is not a database ({err})")) from None
        raise StateError(f"{path}: cannot open the journal: {err}; check the disk and the "
                         "state_dir folder") from None
    except BaseException:
        db.close()
        raise
    return db


def _create(path: Path) -> None:
    """Make a new journal whole under a temporary name, then link it into place: a journal at
    the path is never empty or without its tables, so one that is can only be damage (and
    a second run starting at the same moment uses the first one's)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    try:
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=OFF")  # nothing in it yet that a crash could lose
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        finally:
            db.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # no hard links here (FAT, exFAT, some network shares)
            # The job's lock is held, so no other run is creating it meanwhile.
            if not path.exists():
                os.replace(tmp, path)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)


def not_a_journal(path: Path, why: str) -> str:
    return (f"{path}: this is not a valid mailbatch journal: {why}. It was truncated, replaced "
            "or damaged, and running on it would send every recipient of this job again. "
            "Restore the journal from a backup; if this job has never sent anything, delete "
            "the file and run again")
