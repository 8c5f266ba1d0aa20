"""Helpers for writing job files inline in tests, pointed at the test SMTP server."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.smtpserver import USERNAME, SmtpTestServer

__all__ = ["PASSWORD_ENV", "smtp_block", "write_job"]

PASSWORD_ENV = "MAILBATCH_TEST_PASSWORD"


def write_job(tmp_path: Path, text: str, files: Mapping[str, str | bytes] | None = None) -> Path:
    """Write `tmp_path/job.yaml` from indented test text, plus extra files; returns its path.

    The text is dedented like textwrap.dedent, except that lines indented less than the
    first line are kept as they are: a top-level block from smtp_block() may then be
    appended to, or embedded with {...} in, an indented triple-quoted string.
    """
    for name, content in (files or {}).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    job = tmp_path / "job.yaml"
    job.write_text(_dedent(text), encoding="utf-8")
    return job


def smtp_block(server: SmtpTestServer, ca_file: Path | str | None, **extra: Any) -> str:
    """The `smtp:` mapping of a job file for `server`, as a top-level YAML block.

    `extra` adds or overrides keys (security="starttls", timeout=1); a key set to None is
    left out. Values are written as JSON scalars, which YAML reads the same way.
    """
    settings: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "username": USERNAME,
        "password_env": PASSWORD_ENV,
        "ca_file": ca_file,
        "timeout": 5,
    }
    settings.update(extra)
    lines = ["smtp:"]
    for key, value in settings.items():
        if value is not None:
            value = str(value) if isinstance(value, Path) else value
            lines.append(f"  {key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def _dedent(text: str) -> str:
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    margin = first[: len(first) - len(first.lstrip())]
    out = []
    for line in lines:
        if not line.strip():
            out.append("")
        elif line.startswith(margin):
            out.append(line[len(margin) :])
        else:
            out.append(line)
    return "\n".join(out).lstrip("\n") + "\n"
