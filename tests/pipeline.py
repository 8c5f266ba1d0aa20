"""Shared pieces of the core-pipeline tests: job files, the CLI in-process, reports, messages."""

from __future__ import annotations

import csv
import email
import email.policy
import json
import socket
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mailbatch.cli.main import main
from tests.helpers import PASSWORD_ENV, smtp_block, write_job
from tests.smtpserver import USERNAME, SmtpTestServer

__all__ = [
    "SENDER",
    "SENDER_ADDRESS",
    "closed_port",
    "make_job",
    "offline_job",
    "outline",
    "parse",
    "read_report",
    "run_cli",
]

SENDER = "Sales Reports <reports@example.org>"
SENDER_ADDRESS = "reports@example.org"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``mailbatch run ARGV`` in-process: the exit code and everything printed to stderr."""
    capsys.readouterr()
    code = main(["run", *argv])
    return code, capsys.readouterr().err


def make_job(tmp_path: Path, server: SmtpTestServer, ca_file: Path | None, body: str,
             files: Mapping[str, str | bytes] | None = None, **smtp: Any) -> Path:
    """A job file in ``tmp_path`` sending to ``server``; ``body`` is the job without smtp."""
    return write_job(tmp_path, body + "\n" + smtp_block(server, ca_file, **smtp), files)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_job(tmp_path: Path, body: str, files: Mapping[str, str | bytes] | None = None,
                port: int | None = None) -> Path:
    """A job file whose server does not exist: for dry runs and validation."""
    smtp = (f"smtp:\n  host: 127.0.0.1\n  port: {port or closed_port()}\n"
            f"  username: {USERNAME}\n  password_env: {PASSWORD_ENV}\n  timeout: 2\n")
    return write_job(tmp_path, body + "\n" + smtp, files)


def read_report(folder: Path, dry_run: bool = False) -> tuple[dict[str, Any], list[dict]]:
    """The one JSON report under ``folder/reports`` and the rows of its CSV twin."""
    suffix = "-dry-run" if dry_run else ""
    found = [p for p in (folder / "reports").glob("*.json")
             if p.stem.endswith("-dry-run") == dry_run]
    assert len(found) == 1, f"expected one{suffix} JSON report, found {found}"
    report = json.loads(found[0].read_text(encoding="utf-8"))
    with found[0].with_suffix(".csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    return report, rows


def parse(data: bytes) -> EmailMessage:
    """A message parsed back the way a mail client would."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _lf(text: str) -> str:
    """Text parts travel with CRLF line ends (MIME's canonical form); templates use LF."""
    return text.replace("\r\n", "\n")


def outline(message: EmailMessage) -> dict[str, Any]:
    """Everything a reader sees in a message, decoded; the Date is left out (it is the time
    of sending) and MIME boundaries do not appear at all. Text bodies have LF line ends."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    return {
        "from": str(message["From"]),
        "to": str(message["To"]),
        "cc": str(message["Cc"]) if message["Cc"] else None,
        "reply-to": str(message["Reply-To"]) if message["Reply-To"] else None,
        "subject": str(message["Subject"]),
        "message-id": str(message["Message-ID"]),
        "mime-version": str(message["MIME-Version"]),
        "type": message.get_content_type(),
        "text": _lf(text.get_content()) if text is not None else None,
        "html": _lf(html.get_content()) if html is not None else None,
        "attachments": [(part.get_filename(), part.get_content_type(),
                         part.get_payload(decode=True)) for part in message.iter_attachments()],
    }
