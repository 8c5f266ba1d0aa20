"""Shared pieces of the report-content tests: real PNG files, a dry run, its parsed messages."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path

from mailbatch.cli.main import main
from tests.pipeline import offline_job, parse

__all__ = ["dry_run", "html_of", "png", "related_images", "structure", "text_of"]


def png(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (37, 99, 235)) -> bytes:
    """A valid PNG of one colour (what a mail client would display)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


def dry_run(tmp_path: Path, body: str, files: Mapping[str, str | bytes] | None = None,
            *args: str) -> list[EmailMessage]:
    """``mailbatch run --dry-run`` of the job; the outbox's messages, parsed, in order."""
    job = offline_job(tmp_path, body, files)
    code = main(["run", "-q", "--dry-run", *args, str(job)])
    assert code == 0
    return [parse(path.read_bytes()) for path in sorted(tmp_path.glob("outbox/*/*.eml"))]


def structure(message: EmailMessage) -> list[tuple[int, str]]:
    """The MIME tree as (depth, content type), depth first."""
    out: list[tuple[int, str]] = []

    def walk(part: EmailMessage, depth: int) -> None:
        out.append((depth, part.get_content_type()))
        if part.is_multipart():
            for child in part.iter_parts():
                walk(child, depth + 1)  # type: ignore[arg-type]

    walk(message, 0)
    return out


def related_images(message: EmailMessage) -> dict[str, tuple[str, bytes, str | None]]:
    """The related parts of the HTML body: Content-ID (without <>) -> (type, bytes,
    disposition)."""
    html = message.get_body(("html",))
    assert html is not None
    found = {}
    for part in message.walk():
        if part.get("Content-ID"):
            cid = str(part["Content-ID"]).strip("<>")
            found[cid] = (part.get_content_type(), part.get_payload(decode=True),
                          part.get_content_disposition())
    return found


def html_of(message: EmailMessage) -> str:
    """The HTML body as a client shows it, with LF line ends (MIME sends CRLF)."""
    return message.get_body(("html",)).get_content().replace("\r\n", "\n")


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")
