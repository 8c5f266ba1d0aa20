"""Generated files: per-recipient CSV attachments, zipped attachments, and the scratch folder.

Generated content is built in the render pass and written to a scratch folder, one file per
distinct content (named by its digest), so a message carries a path like any attachment: the
spool and the render worker's replies hold only that path, memory stays flat however many
recipients there are, and content that many recipients share (a region's CSV, a chart, a
zip of the same files) is stored, read and encoded once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mailbatch.message.attachments import Attachment, AttachmentProblem

__all__ = ["Scratch", "csv_bytes", "zip_attachments"]


class Scratch:
    """The run's folder for generated files, made at first use and removed with its owner.

    A render worker gets the owner's folder (``Scratch(path)``): both processes write there,
    each file atomically (written aside, then renamed), and a file already there is used as
    it is: its name says what it holds.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self._path = Path(path) if path is not None else None

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = Path(tempfile.mkdtemp(prefix="mailbatch-generated-"))
            weakref.finalize(self, shutil.rmtree, self._path, True)
        return self._path

    def holds(self, path: Path) -> bool:
        """Whether ``path`` is a generated file (of this folder)."""
        return self._path is not None and path.parent == self._path

    def find(self, name: str) -> Path | None:
        """The file ``name`` if it was stored already (by this process or the other)."""
        path = self.path / name
        return path if path.is_file() else None

    def store(self, data: bytes, suffix: str) -> Path:
        """Content stored under its digest (once, however often it is stored)."""
        name = hashlib.sha256(data).hexdigest()[:32] + suffix
        return self.find(name) or self.store_as(name, data)

    def store_as(self, name: str, data: bytes) -> Path:
        path = self.path / name
        try:
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".part-",
                                             delete=False) as file:
                file.write(data)
            os.replace(file.name, path)
        except OSError as err:
            raise AttachmentProblem(f"cannot write a generated file to {self.path}: "
                                    f"{err.strerror}; free some disk space") from None
        return path


def csv_bytes(rows: Any, columns: Sequence[str] = ()) -> bytes:
    """Rows (mappings, or sequences after a header row) as CSV: UTF-8, CRLF line ends, a
    header row of the columns (default: the fields of the first row, in order)."""
    if isinstance(rows, (Mapping, str | bytes)):
        raise AttachmentProblem("csv: must give a list of rows, not "
                                f"{type(rows).__name__}")
    try:
        rows = list(rows)
    except TypeError:
        raise AttachmentProblem(f"csv: must give a list of rows, not {type(rows).__name__}"
                                ) from None
    out = io.StringIO()
    writer = csv.writer(out)
    if rows and all(isinstance(row, Mapping) for row in rows):
        fields = list(columns) or list(rows[0])
        writer.writerow(fields)
        for row in rows:
            writer.writerow(["" if row.get(f) is None else row.get(f) for f in fields])
    elif all(isinstance(row, list | tuple) for row in rows):
        if columns:
            writer.writerow(columns)
        writer.writerows(rows)
    else:
        raise AttachmentProblem("csv: every row must be a mapping of fields (a data file's "
                                "rows) or a list of values")
    return out.getvalue().encode("utf-8")


def zip_attachments(scratch: Scratch, attachments: Iterable[Attachment],
                    filename: str) -> Attachment:
    """One ZIP archive of the attachments, under their own names (a repeated name gets
    ``(2)``). Built once per distinct set of files: the archive's name in the scratch folder
    is the digest of the files' identities, and it is written file by file, never held."""
    members = list(attachments)
    try:
        identity = [(str(a.path.resolve()), a.filename, a.path.stat().st_size,
                     a.path.stat().st_mtime_ns) for a in members]
    except OSError as err:
        raise AttachmentProblem(f"cannot read an attachment to zip: {err}") from None
    name = "zip-" + hashlib.sha256(repr(identity).encode()).hexdigest()[:32] + ".zip"
    path = scratch.find(name)
    if path is None:
        import zipfile  # only for jobs that zip their attachments: 1 ms of every start-up

        used: set[str] = set()
        try:
            with tempfile.NamedTemporaryFile(dir=scratch.path, prefix=".part-",
                                             delete=False) as file, \
                    zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED) as archive:
                for attachment in members:
                    info = zipfile.ZipInfo.from_file(attachment.path, _unique(
                        attachment.filename, used), strict_timestamps=False)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with attachment.path.open("rb") as source, \
                            archive.open(info, "w") as member:
                        shutil.copyfileobj(source, member, 1 << 20)
            path = scratch.path / name
            os.replace(file.name, path)
        except OSError as err:
            raise AttachmentProblem(f"cannot zip the attachments into {filename!r}: "
                                    f"{err}") from None
    return Attachment(path=path, filename=filename, content_type="application/zip",
                      size=path.stat().st_size)


def _unique(name: str, used: set[str]) -> str:
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    candidate, n = name, 1
    while candidate.lower() in used:
        n += 1
        candidate = f"{stem} ({n}){dot}{suffix}"
    used.add(candidate.lower())
    return candidate
