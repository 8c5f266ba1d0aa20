"""Delivery test helpers: a job of N recipients with fast retries, run it, read the report."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailbatch.batch.report import exit_code_for
from mailbatch.batch.runner import RunOptions, run
from mailbatch.errors import MailbatchError
from mailbatch.job.model import load_job
from tests.helpers import smtp_block, write_job
from tests.smtpserver import SmtpTestServer

__all__ = ["BATCH", "FAST_RETRY", "NOW", "Outcome", "addresses", "batch_job", "newest_report",
           "run_batch", "spawn", "statuses"]

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
BATCH = "2026-03-02"  # the default batch identity, {{ today }}, at NOW
FAST_RETRY = {"attempts": 5, "backoff": 0.01, "max_backoff": 0.05, "max_time": 20}


def addresses(n: int, prefix: str = "user") -> list[str]:
    return [f"{prefix}{i}@example.org" for i in range(1, n + 1)]


def batch_job(tmp_path: Path, server: SmtpTestServer, ca_file: Path,
              recipients: int | list[str] = 5, *, extra: str = "", **smtp: Any) -> Path:
    """A job sending one short message to each address, with retries fast enough for tests."""
    listed = addresses(recipients) if isinstance(recipients, int) else recipients
    rows = "\n".join(f"  - {{email: {a}, name: Person {i}}}" for i, a in enumerate(listed, 1))
    smtp.setdefault("retry", FAST_RETRY)
    text = (smtp_block(server, ca_file, **smtp)
            + 'from: "Reports <reports@example.org>"\n'
            + 'subject: "Report for {{ name }}"\n'
            + 'text: "Hello {{ name }}"\n'
            + f"recipients:\n{rows}\n" + extra)
    tmp_path.mkdir(parents=True, exist_ok=True)
    return write_job(tmp_path, text)


@dataclass
class Outcome:
    """What a run gave: the CLI's exit code, the error line if it raised, the report read back."""

    code: int
    error: str | None
    report: dict[str, Any] | None

    @property
    def statuses(self) -> dict[str, str]:
        return statuses(self.report)

    @property
    def counts(self) -> Counter[str]:
        return Counter(self.statuses.values())


def run_batch(job: Path, **options: Any) -> Outcome:
    """Run the job in-process as `mailbatch run` would; the newest report is read back."""
    options.setdefault("now", NOW)
    try:
        report = run(load_job(job), RunOptions(**options))
    except MailbatchError as err:
        code, error = err.exit_code, str(err)
    else:
        code, error = exit_code_for(report), None
    return Outcome(code, error, newest_report(job.parent))


def newest_report(folder: Path) -> dict[str, Any] | None:
    reports = sorted((folder / "reports").glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    return json.loads(reports[-1].read_text(encoding="utf-8")) if reports else None


def statuses(report: dict[str, Any] | None) -> dict[str, str]:
    assert report is not None, "no report was written"
    return {row["address"]: row["status"] for row in report["recipients"]}


def spawn(job: Path, *args: str) -> subprocess.Popen[str]:
    """A real `python -m mailbatch run JOB` process, started from another folder than the job's.

    The password comes from the environment (the password_env fixture sets it).
    """
    return subprocess.Popen([sys.executable, "-m", "mailbatch", "run", str(job), *args],
                            cwd=job.parent.parent, env=dict(os.environ), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
