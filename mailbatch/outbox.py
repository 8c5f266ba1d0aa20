"""The dry run's transport: every message written to the outbox folder as an ``.eml`` file."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from mailbatch.errors import StateError
from mailbatch.transport import AfterEnd, Outcome

__all__ = ["FileTransport"]


class FileTransport:
    """The dry run: each message is written as ``NNNNNN-address.eml`` into the outbox folder."""

    max_size = None

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox

    def __enter__(self) -> FileTransport:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        try:
            self.outbox.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StateError(f"{self.outbox}: cannot create the outbox: {err.strerror}") \
                from None

    def close(self) -> None:
        pass

    def send(self, sender: str, recipients: list[str], data: bytes, name: str,
             before_end: Callable[[], None], after_end: AfterEnd | None = None) -> Outcome:
        path = self.outbox / f"{re.sub(r'[^A-Za-z0-9@._+-]', '_', name)}.eml"
        tmp = path.with_suffix(".eml.tmp")
        try:
            tmp.write_bytes(data)
            tmp.replace(path)
        except OSError as err:
            raise StateError(f"{path}: cannot write: {err.strerror}") from None
        if after_end is not None:
            after_end()
        return Outcome("dry-run", None, f"written to {path.name}")
